"""Tests for the `recoworld` command."""

import pytest

from recoworld.cli.main import main

pytest.importorskip("pyarrow")


def test_simulate_writes_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["simulate", "--users", "50", "--days", "3", "--out", str(out)]) == 0
    assert (out / "summary.json").is_file()
    assert (out / "simulation.png").is_file()
    for name in ("random", "popularity"):
        assert sorted(p.name for p in (out / "trajectories" / name).iterdir()) == [
            "part-0000.parquet",
            "part-0001.parquet",
            "part-0002.parquet",
        ]
    captured = capsys.readouterr()
    assert "random" in captured.out and "popularity" in captured.out
    assert "retention" not in captured.err and "6/6" in captured.err
    assert str(out) in captured.out


def test_simulate_without_trajectories(tmp_path):
    out = tmp_path / "run"
    argv = [
        "simulate",
        "--users",
        "20",
        "--days",
        "2",
        "--recommenders",
        "random",
        "--no-trajectories",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert (out / "summary.json").is_file() and not (out / "trajectories").exists()


def test_bad_preset_names_the_valid_ones(capsys):
    assert main(["simulate", "--preset", "grumpy"]) == 2
    err = capsys.readouterr().err
    assert "grumpy" in err
    for preset in ("engagement", "novelty_seeking", "retention"):
        assert preset in err


def test_recoworld_errors_are_one_line(tmp_path, capsys):
    argv = ["simulate", "--users", "5", "--recommenders", "nope", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown recommender 'nope'")
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["--help"], ["simulate", "--help"], ["--version"]])
def test_help_and_version_exit_zero(argv, capsys):
    assert main(argv) == 0
    assert capsys.readouterr().out


def test_a_command_is_required(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_bench_prints_user_steps_per_second(capsys) -> None:
    from recoworld.cli.main import main

    assert (
        main(["bench", "--env", "recoworld/Engagement-v0", "--users", "1", "8", "--seconds", "0.2"])
        == 0
    )
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "users" in line and line.strip()[0].isdigit()]
    assert len(rows) == 2
    assert all(float(r.split()[-1].replace(",", "")) > 0 for r in rows)
