"""SB3 callbacks used by `train`: evaluation on fixed users, and a progress hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recoworld.errors import require

require("stable_baselines3", "rl")

from stable_baselines3.common.callbacks import BaseCallback, EvalCallback  # noqa: E402

from recoworld.metrics import mean_ci  # noqa: E402


class SeededEvalCallback(EvalCallback):
    """`EvalCallback` that re-seeds the evaluation env before every evaluation, so every
    evaluation meets the same users (common random numbers: the curve's ups and downs come
    from the policy, not from which users happened to be drawn), and that evaluates once more
    at the end of training when the last scheduled evaluation was earlier.

    Args:
        eval_env: the evaluation VecEnv (not the training one).
        eval_seed: seed of its users.
        **kwargs: `EvalCallback` arguments.
    """

    def __init__(self, eval_env: Any, eval_seed: int, **kwargs: Any) -> None:
        super().__init__(eval_env, **kwargs)
        self.eval_seed = eval_seed
        self._last_returns: list[float] = []

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            return self._evaluate()
        return True

    def _evaluate(self) -> bool:
        self.eval_env.seed(self.eval_seed)
        freq, self.eval_freq = self.eval_freq, 1  # the parent evaluates when n_calls % freq == 0
        try:
            keep_going = super()._on_step()
        finally:
            self.eval_freq = freq
        if self.evaluations_results:
            self._last_returns = list(self.evaluations_results[-1])
        return keep_going

    def _on_training_end(self) -> None:
        done = self.evaluations_timesteps
        if not done or done[-1] != self.num_timesteps:
            self._evaluate()

    def last_return(self) -> tuple[float, float]:
        """Mean and 95% CI half-width of the last evaluation's episode returns."""
        return mean_ci(self._last_returns) if self._last_returns else (float("nan"),) * 2


class EpisodeLogCallback(BaseCallback):
    """Appends ``step,return,length`` to a CSV each time a training episode ends, ``step``
    being the training step count at that moment (the x axis of a learning curve).

    Reads the ``episode`` entry that `VecMonitor` adds to a finished env's info.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._file: Any = None

    def _on_training_start(self) -> None:
        self._file = open(self.path, "w", newline="")  # closed at training end
        self._file.write("step,return,length\n")

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            ep = info.get("episode")
            if ep is not None:
                self._file.write(f"{self.num_timesteps},{ep['r']:.6g},{ep['l']}\n")
        return True

    def _on_training_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ProgressCallback(BaseCallback):
    """Calls ``progress(done, total, label)`` about 100 times per run; the label carries the
    mean return of the last training episodes."""

    def __init__(self, progress: Any, total: int) -> None:
        super().__init__()
        self.progress = progress
        self.total = total
        self.every = max(total // 100, 1)
        self._next = 0

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = self.num_timesteps + self.every
            self.progress(min(self.num_timesteps, self.total), self.total, self._label())
        return True

    def _on_training_end(self) -> None:
        self.progress(self.total, self.total, self._label())

    def _label(self) -> str:
        buf = getattr(self.model, "ep_info_buffer", None)
        if buf:
            return f"return {sum(e['r'] for e in buf) / len(buf):.1f}"
        return ""
