"""Tests for recoworld.replay.loaders: reading, validating and writing logged sessions."""

from __future__ import annotations

import itertools
import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from recoworld import Catalog
from recoworld.errors import ReplayDataError
from recoworld.replay.loaders import Sessions, load_sessions
from recoworld.replay.schema import COLUMN_NAMES, read_trajectories
from recoworld.simulation import SimulationResult, simulate

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

N_ITEMS = 300
KEYS = ["recommender", "user_id", "session", "step"]


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    with pytest.MonkeyPatch.context() as mp:  # the PNG is not under test; skip drawing it
        mp.setattr(SimulationResult, "plot", lambda self, path: Path(path))
        simulate(
            recommenders=("random", "popularity"),
            n_users=40,
            days=2,
            n_items=N_ITEMS,
            seed=0,
            out_dir=out,
        )
    return out / "trajectories"


@pytest.fixture(scope="module")
def sessions(log_dir: Path) -> Sessions:
    return load_sessions(log_dir, n_items=N_ITEMS)


def assert_same(a: Sessions, b: Sessions) -> None:
    for f in fields(Sessions):
        if f.name == "meta":
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert x.dtype == y.dtype and x.shape == y.shape, f.name
        np.testing.assert_array_equal(x, y, err_msg=f.name)


# ------------------------------------------------------------------- good logs
def test_loads_what_simulate_wrote(log_dir: Path, sessions: Sessions) -> None:
    df = read_trajectories(log_dir).sort_values(KEYS, kind="stable").reset_index(drop=True)
    assert sessions.n_steps == len(df)
    for name in ("user_id", "session", "day", "step", "clicked", "reward", "left"):
        np.testing.assert_array_equal(getattr(sessions, name), df[name].to_numpy(), name)
    np.testing.assert_array_equal(sessions.candidate_ids, np.stack(df.candidate_ids))
    np.testing.assert_array_equal(sessions.propensity, np.stack(df.propensity))
    assert list(sessions.recommender) == list(df.recommender)
    assert sessions.propensity_known and sessions.meta["defaulted"] == []
    assert len(sessions.meta["sources"]) == 4  # two recommenders, two days


def test_rows_are_sorted_and_sessions_bounded(sessions: Sessions) -> None:
    rec = np.unique(sessions.recommender, return_inverse=True)[1]
    keys = np.stack([rec, sessions.user_id, sessions.session, sessions.step])
    order = np.lexsort(keys[::-1])
    np.testing.assert_array_equal(order, np.arange(sessions.n_steps))
    b = sessions.session_bounds()
    assert b[0] == 0 and b[-1] == sessions.n_steps and (np.diff(b) > 0).all()
    assert sessions.n_sessions == len({tuple(k) for k in keys[:3].T})
    for lo, hi in itertools.pairwise(b):
        np.testing.assert_array_equal(sessions.step[lo:hi], np.arange(hi - lo))


def test_arrays_are_read_only(sessions: Sessions) -> None:
    with pytest.raises(ValueError, match="read-only"):
        sessions.clicks[0, 0] = True


def test_recommender_filter(log_dir: Path, sessions: Sessions) -> None:
    rand = load_sessions(log_dir, recommender="random")
    assert set(rand.recommender) == {"random"}
    assert rand.n_steps == int((sessions.recommender == "random").sum())
    with pytest.raises(ReplayDataError, match=r"no rows of recommender 'nope'.*'popularity'"):
        load_sessions(log_dir, recommender="nope")


def test_csv_and_parquet_round_trips_are_equal(sessions: Sessions, tmp_path: Path) -> None:
    via_csv = load_sessions(sessions.to_csv(tmp_path / "log.csv"), n_items=N_ITEMS)
    via_parquet = load_sessions(sessions.to_parquet(tmp_path / "log.parquet"))
    assert_same(sessions, via_csv)
    assert_same(sessions, via_parquet)
    assert list(via_parquet.to_frame().columns) == list(COLUMN_NAMES)


def test_take_keeps_rows(sessions: Sessions) -> None:
    mask = sessions.user_id == 3
    part = sessions.take(mask)
    assert part.n_steps == mask.sum() and (part.user_id == 3).all()
    np.testing.assert_array_equal(part.slate_ids, sessions.slate_ids[mask])
    assert sessions.take(slice(0, 5)).n_steps == 5


MINIMAL = """user_id,session,day,step,slate_ids,clicks
7,0,0,0,"[4, 2]","[false, true]"
7,0,0,1,1 3,False False
7,1,1,0,[5],[True]
3,0,0,0,[2],[0]
"""


def test_optional_columns_get_defaults(tmp_path: Path) -> None:
    path = tmp_path / "minimal.csv"
    path.write_text(MINIMAL)
    s = load_sessions(path)
    np.testing.assert_array_equal(s.user_id, [3, 7, 7, 7])  # sorted by user
    assert set(s.recommender) == {"logged"} and set(s.instruction) == {""}
    np.testing.assert_array_equal(s.slate_ids, [[2, -1], [4, 2], [1, 3], [5, -1]])
    np.testing.assert_array_equal(s.candidate_ids, s.slate_ids)
    np.testing.assert_array_equal(s.slate_mask(), [[1, 0], [1, 1], [1, 1], [1, 0]])
    np.testing.assert_array_equal(s.propensity, [[1, np.nan], [1, 1], [1, 1], [1, np.nan]])
    assert not s.propensity_known
    np.testing.assert_array_equal(s.clicked, [-1, 2, -1, 5])
    np.testing.assert_array_equal(s.left, [True, False, True, True])
    np.testing.assert_array_equal(s.reward, [0, 1, 0, 1])
    np.testing.assert_array_equal(s.return_days, [-1] * 4)
    assert "propensity" in s.meta["defaulted"] and "left" in s.meta["defaulted"]
    # writing drops the padding and the unknown propensities; reading back restores both
    again = load_sessions(s.to_csv(tmp_path / "again.csv"))
    assert_same(s, again)
    assert not again.propensity_known


def test_extra_columns_are_ignored_and_listed(tmp_path: Path) -> None:
    lines = MINIMAL.splitlines()
    path = tmp_path / "extra.csv"
    path.write_text("\n".join([lines[0] + ",device"] + [x + ",phone" for x in lines[1:]]) + "\n")
    assert load_sessions(path).meta["extra_columns"] == ["device"]


def test_fixed_size_lists_and_narrow_ints_in_parquet(sessions: Sessions, tmp_path: Path) -> None:
    table = sessions.take(slice(0, 20)).to_table()
    i = table.schema.get_field_index("candidate_ids")
    fixed = pa.FixedSizeListArray.from_arrays(
        table["candidate_ids"].combine_chunks().flatten(), sessions.candidate_ids.shape[1]
    )
    table = table.set_column(i, "candidate_ids", fixed)
    table = table.set_column(
        table.schema.get_field_index("user_id"), "user_id", table["user_id"].cast(pa.int32())
    )
    pq.write_table(table, tmp_path / "fixed.parquet")
    assert_same(load_sessions(tmp_path / "fixed.parquet"), sessions.take(slice(0, 20)))


# -------------------------------------------------------------------- bad logs
BASE = """user_id,session,day,step,candidate_ids,slate_ids,propensity,clicks,clicked,watch_time,\
watch_fraction
0,0,0,0,"[1, 2, 3]","[1, 2]","[0.5, 0.5]","[false, true]",2,3.0,0.5
0,0,0,1,"[4, 5, 6]","[4, 5]","[0.5, 0.5]","[false, false]",-1,0.0,0.0
1,0,0,0,"[1, 2, 3]","[3, 1]","[0.5, 0.5]","[true, false]",3,1.0,0.25
"""
HEADER = BASE.splitlines()[0].split(",")


def with_cell(row: int, column: str, value: str) -> str:
    """BASE with one cell replaced (cells are split naively; list cells are quoted)."""
    lines = BASE.splitlines()
    cells = re.findall(r'"[^"]*"|[^,]+', lines[row + 1])
    cells[HEADER.index(column)] = value
    lines[row + 1] = ",".join(cells)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("row", "column", "value", "message"),
    [
        pytest.param(1, "day", "-1", r"-1 is negative", id="negative-day"),
        pytest.param(2, "step", "-3", r"-3 is negative", id="negative-step"),
        pytest.param(0, "session", "-1", r"-1 is negative", id="negative-session"),
        pytest.param(0, "watch_time", "-2.5", r"-2.5 is negative", id="negative-time"),
        pytest.param(1, "step", "x", r"'x' is not a valid int32", id="text-in-int"),
        pytest.param(1, "step", "1.5", r"1.5 is not a valid int32", id="fraction-in-int"),
        pytest.param(2, "user_id", "", r"missing value", id="missing-value"),
        pytest.param(0, "watch_fraction", "1.5", r"1.5 is outside \[0, 1\]", id="fraction>1"),
        pytest.param(0, "watch_time", "inf", r"NaN or infinite", id="infinite-time"),
        pytest.param(
            2,
            "candidate_ids[2]",
            '"[1, 2, 300]"',
            r"300 is not an item id in \[0, 300\)",
            id="unknown-candidate",
        ),
        pytest.param(
            1,
            "slate_ids[1]",
            '"[4, -2]"',
            r"-2 is not an item id in \[0, 300\) or -1",
            id="negative-slate-id",
        ),
        pytest.param(
            0, "clicked", "300", r"300 is not an item id in \[0, 300\)", id="unknown-clicked"
        ),
        pytest.param(
            0, "propensity[1]", '"[0.5, 1.5]"', r"1.5 is outside \(0, 1\]", id="propensity>1"
        ),
        pytest.param(
            1, "propensity[0]", '"[0, 0.5]"', r"0.0 is outside \(0, 1\]", id="propensity-zero"
        ),
        pytest.param(
            1, "propensity[0]", '"[-0.1, 0.5]"', r"-0.1 is outside \(0, 1\]", id="propensity<0"
        ),
        pytest.param(
            2, "propensity", '"[0.5]"', r"1 values for a slate of 2 items", id="short-propensity"
        ),
        pytest.param(
            2,
            "clicks",
            '"[true, false, false]"',
            r"3 values for a slate of 2 items",
            id="long-clicks",
        ),
        pytest.param(
            0, "clicks[1]", '"[false, maybe]"', r"'maybe' is not a valid bool", id="bad-bool"
        ),
        pytest.param(1, "slate_ids", '"[]"', r"empty list", id="empty-slate"),
        pytest.param(
            0, "clicked", "1", r"1 is not the first clicked slot's item \(2", id="clicked-disagrees"
        ),
    ],
)
def test_bad_csv_values_name_file_row_and_column(
    tmp_path: Path, row: int, column: str, value: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(with_cell(row, column.split("[")[0], value))
    with pytest.raises(ReplayDataError) as exc:
        load_sessions(path, n_items=N_ITEMS)
    text = str(exc.value)
    assert text.startswith(f"{path}: row {row} (line {row + 2}), column {column!r}: "), text
    assert re.search(message, text), text


def test_good_base_loads(tmp_path: Path) -> None:
    path = tmp_path / "good.csv"
    path.write_text(BASE)
    s = load_sessions(path, catalog=Catalog.synthetic(N_ITEMS, seed=0))
    assert s.n_steps == 3 and s.propensity_known


def test_click_on_an_empty_slot(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    text = with_cell(0, "slate_ids", '"[1, -1]"').replace('"[false, true]",2', '"[false, true]",-1')
    path.write_text(text)
    with pytest.raises(
        ReplayDataError, match=r"row 0 \(line 2\), column 'clicks\[1\]': a click on"
    ):
        load_sessions(path)


def test_step_logged_twice(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text(with_cell(1, "step", "0"))
    with pytest.raises(
        ReplayDataError,
        match=rf"{re.escape(str(path))}: row 1 \(line 3\), "
        r"column 'step': user 0 session 0 step 0 is logged twice",
    ):
        load_sessions(path)


def test_missing_required_column(tmp_path: Path) -> None:
    path = tmp_path / "noday.csv"
    lines = [
        ",".join(c for i, c in enumerate(re.findall(r'"[^"]*"|[^,]+', line)) if i != 2)
        for line in BASE.splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        ReplayDataError,
        match=rf"{re.escape(str(path))}: the required columns "
        r"\['day'\] are missing",
    ):
        load_sessions(path)


def parquet_with(tmp_path: Path, sessions: Sessions, name: str, array: object) -> Path:
    table = sessions.take(slice(0, 10)).to_table()
    table = table.set_column(table.schema.get_field_index(name), name, array)
    path = tmp_path / f"bad-{name}.parquet"
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        pytest.param(
            "day",
            lambda: pa.array(["monday"] * 10),
            r"row 0, column 'day': 'monday' "
            r"is not a valid int32",
            id="text-day",
        ),
        pytest.param(
            "step",
            lambda: pa.array([0.0] * 9 + [2.5]),
            r"row 9, column 'step': 2.5 is "
            r"not a valid int32",
            id="float-step",
        ),
        pytest.param(
            "user_id",
            lambda: pa.array([1] * 9 + [None], pa.int64()),
            r"row 9, column 'user_id': missing value",
            id="null",
        ),
        pytest.param(
            "clicked",
            lambda: pa.array([[1]] * 10),
            r"column 'clicked': holds lists",
            id="list-for-scalar",
        ),
        pytest.param(
            "slate_ids",
            lambda: pa.array([True] * 10),
            r"column 'slate_ids': holds bool;"
            r" expected a list of int32",
            id="scalar-for-list",
        ),
        pytest.param(
            "liked",
            lambda: pa.array([2] * 10),
            r"row 0, column 'liked': 2 is not a "
            r"valid bool",
            id="int-for-bool",
        ),
        pytest.param(
            "session",
            lambda: pa.array([2**40] * 10),
            r"row 0, column 'session': "
            r"1099511627776 is not a valid int32",
            id="overflow",
        ),
    ],
)
def test_mistyped_parquet_columns(
    tmp_path: Path, sessions: Sessions, name: str, make: object, message: str
) -> None:
    path = parquet_with(tmp_path, sessions, name, make())  # type: ignore[operator]
    with pytest.raises(ReplayDataError, match=re.escape(str(path)) + ": " + message):
        load_sessions(path)


@pytest.mark.parametrize("keep", [0.5, 0.98, 0.0])
def test_truncated_parquet_fails_clearly(sessions: Sessions, tmp_path: Path, keep: float) -> None:
    path = sessions.to_parquet(tmp_path / "log.parquet")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(
        ReplayDataError,
        match=rf"{re.escape(str(path))}: cannot read it as "
        "Parquet; the file is truncated, corrupt or not Parquet",
    ):
        load_sessions(path)


def test_corrupt_part_in_a_folder_is_named(sessions: Sessions, tmp_path: Path) -> None:
    sessions.take(slice(0, 50)).to_parquet(tmp_path / "part-0000.parquet")
    bad = tmp_path / "part-0001.parquet"
    bad.write_bytes(b"PAR1 this is not really parquet PAR1")
    with pytest.raises(ReplayDataError, match=re.escape(str(bad))):
        load_sessions(tmp_path)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param(lambda p: p / "nope.parquet", r"nope.parquet does not exist", id="missing"),
        pytest.param(lambda p: p, r"holds no .parquet or .csv files", id="empty-folder"),
        pytest.param(
            lambda p: (p / "log.json").write_text("{}") and p / "log.json",
            r"unknown log format; name it .parquet or .csv",
            id="unknown-suffix",
        ),
    ],
)
def test_bad_paths(tmp_path: Path, setup: object, message: str) -> None:
    with pytest.raises(ReplayDataError, match=message):
        load_sessions(setup(tmp_path))  # type: ignore[operator]


def test_catalog_and_n_items_must_agree(log_dir: Path) -> None:
    with pytest.raises(ReplayDataError, match=r"n_items=10 disagrees with the catalog's 300"):
        load_sessions(log_dir, n_items=10, catalog=Catalog.synthetic(N_ITEMS, seed=0))


def test_failed_write_leaves_the_old_file(sessions: Sessions, tmp_path: Path, monkeypatch) -> None:
    path = sessions.to_parquet(tmp_path / "log.parquet")
    before = path.read_bytes()

    def broken(table: object, where: object, **kwargs: object) -> None:
        Path(str(where)).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        sessions.take(slice(0, 3)).to_parquet(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.parquet"]


def test_files_of_one_log_need_the_same_columns(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(MINIMAL)
    lines = MINIMAL.splitlines()
    (tmp_path / "b.csv").write_text(
        "\n".join([lines[0] + ",reward"] + [x.replace("7,", "8,", 1) + ",1.0" for x in lines[1:]])
    )
    with pytest.raises(ReplayDataError, match=r"a.csv: column 'reward' is missing, but .*b.csv"):
        load_sessions(tmp_path)
    (tmp_path / "a.csv").unlink()
    assert load_sessions(tmp_path).meta["sources"] == [str(tmp_path / "b.csv")]
