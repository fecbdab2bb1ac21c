"""Errors raised by recoworld. Every message names the bad value and how to fix it."""

from __future__ import annotations


class RecoworldError(Exception):
    """Base class of all recoworld errors."""


class ConfigError(RecoworldError, ValueError):
    """An invalid configuration value (sizes, probabilities, names)."""


class InvalidAction(RecoworldError, ValueError):
    """An action outside the environment's action space."""


class CatalogError(RecoworldError, ValueError):
    """A catalog table with missing columns, NaNs or inconsistent lengths."""


class ReplayDataError(RecoworldError, ValueError):
    """A logged-session file that does not follow the log schema."""


class MissingExtraError(RecoworldError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class LLMError(RecoworldError, RuntimeError):
    """An LLM endpoint failed or answered outside its schema."""


def require(module: str, extra: str) -> object:
    """Import an optional dependency or raise `MissingExtraError` naming the extra.

    Args:
        module: importable module name, e.g. ``"pyarrow.parquet"``.
        extra: the recoworld extra that provides it, e.g. ``"data"``.

    Returns:
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            f"{module!r} is not installed; install it with: pip install 'recoworld[{extra}]'"
        ) from exc
