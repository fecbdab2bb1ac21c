"""Tests for recoworld.replay.converters on small fixtures written here in each public layout."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from recoworld.errors import ConfigError, ReplayDataError
from recoworld.replay.converters import LAYOUTS, convert
from recoworld.replay.loaders import load_sessions

pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("pandas")

T0 = 1_650_000_000  # 2022-04-15 05:20:00 UTC
MIN = 60
# (user, item, seconds after T0, rating): user 7 has sessions split by a 31-minute gap and a
# day change; a 30-minute gap does not split; user 3 has one session; user 9 one event.
EVENTS = [
    (7, 501, 0, 5.0),
    (7, 502, 10 * MIN, 2.0),
    (7, 501, 40 * MIN, 4.0),  # exactly 30 min later: same session
    (7, 777, 71 * MIN, 1.0),  # 31 min later: new session
    (7, 502, 2 * 86_400, 4.5),  # two days later: new session
    (3, 900, 5, 3.0),
    (3, 501, 65, 4.0),
    (9, 777, 3 * 86_400, 5.0),
]
ITEMS = [501, 502, 777, 900]
# expected per event, in EVENTS order: (session, step, day, left, return_days, click)
EXPECTED = [
    (0, 0, 0, False, -1, True),
    (0, 1, 0, False, -1, False),
    (0, 2, 0, True, 0, True),
    (1, 0, 0, True, 2, False),
    (2, 0, 2, True, -1, True),
    (0, 0, 0, False, -1, False),
    (0, 1, 0, True, -1, True),
    (0, 0, 3, True, -1, True),
]


def write_movielens_csv(path: Path) -> Path:
    rows = [f"{u},{i},{r},{T0 + t}" for u, i, t, r in EVENTS]
    path.write_text("userId,movieId,rating,timestamp\n" + "\n".join(rows) + "\n")
    return path


def write_movielens_dat(path: Path) -> Path:
    path.write_text("".join(f"{u}::{i}::{int(r)}::{T0 + t}\n" for u, i, t, r in EVENTS))
    return path


def write_movielens_100k(path: Path) -> Path:
    path.write_text("".join(f"{u}\t{i}\t{int(r)}\t{T0 + t}\n" for u, i, t, r in EVENTS))
    return path


def write_recbole(path: Path) -> Path:
    head = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    body = "".join(f"u{u}\t{i}\t{r}\t{T0 + t}.0\n" for u, i, t, r in EVENTS)
    path.write_text(head + body)
    return path


def write_kuairand(path: Path) -> Path:
    head = "user_id,video_id,date,hourmin,time_ms,is_click,is_like,play_time_ms,duration_ms\n"
    rows = [
        f"{u},{i},20220415,500,{(T0 + t) * 1000},{int(r >= 4)},{int(r == 5)},"
        f"{int(r >= 4) * 12_000},{(i % 7 + 1) * 10_000}"
        for u, i, t, r in EVENTS
    ]
    path.write_text(head + "\n".join(rows) + "\n")
    return path


def write_kuairec(path: Path) -> Path:
    head = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n"
    rows = [f"{u},{i},{int(r * 5000)},10000,x,20220415,{T0 + t}.0,{r / 2}" for u, i, t, r in EVENTS]
    path.write_text(head + "\n".join(rows) + "\n")
    return path


FIXTURES: dict[str, tuple[str, str, Callable[[Path], Path]]] = {
    "movielens-csv": ("movielens", "ratings.csv", write_movielens_csv),
    "movielens-dat": ("movielens", "ratings.dat", write_movielens_dat),
    "movielens-100k": ("movielens", "u.data", write_movielens_100k),
    "recbole": ("recbole", "ml.inter", write_recbole),
    "kuairand": ("kuairand", "log_standard.csv", write_kuairand),
    "kuairec": ("kuairec", "small_matrix.csv", write_kuairec),
}


def expected_rows() -> list[int]:
    """EVENTS indices in the converted log's order (user, session, step)."""
    keys = [(u, EXPECTED[k][0], EXPECTED[k][1]) for k, (u, *_) in enumerate(EVENTS)]
    return sorted(range(len(EVENTS)), key=lambda k: keys[k])


@pytest.mark.parametrize("name", list(FIXTURES))
def test_layouts_map_to_the_same_sessions(tmp_path: Path, name: str) -> None:
    layout, filename, write = FIXTURES[name]
    src = write(tmp_path / filename)
    result = convert(src, layout, tmp_path / "out.parquet")
    s = result.sessions
    order = expected_rows()
    exp = np.array([EXPECTED[k] for k in order], dtype=object)
    np.testing.assert_array_equal(s.session, exp[:, 0].astype(int))
    np.testing.assert_array_equal(s.step, exp[:, 1].astype(int))
    np.testing.assert_array_equal(s.day, exp[:, 2].astype(int))
    np.testing.assert_array_equal(s.left, exp[:, 3].astype(bool))
    np.testing.assert_array_equal(s.return_days, exp[:, 4].astype(int))
    if layout != "kuairec":  # KuaiRec clicks come from watch_ratio >= 2, i.e. rating 4+
        np.testing.assert_array_equal(s.clicks[:, 0], exp[:, 5].astype(bool))
    # items re-indexed 0 .. n - 1, with the mapping back to the original ids
    assert [str(x) for x in result.item_ids] == [str(x) for x in ITEMS]
    originals = np.array([EVENTS[k][1] for k in order])
    np.testing.assert_array_equal(result.item_ids[s.slate_ids[:, 0]].astype(int), originals)
    np.testing.assert_array_equal(s.candidate_ids, s.slate_ids)
    np.testing.assert_array_equal(s.clicked, np.where(s.clicks[:, 0], s.slate_ids[:, 0], -1))
    # slate of one, propensity unknown
    assert s.slate_ids.shape == (len(EVENTS), 1)
    assert (s.propensity == 1).all() and not s.propensity_known
    assert s.meta["layout"] == layout and s.meta["item_ids"] == result.item_ids.tolist()
    # the file holds the same log
    again = load_sessions(result.path)
    np.testing.assert_array_equal(again.slate_ids, s.slate_ids)
    assert not again.propensity_known and again.meta["layout"] == layout


def test_integer_user_ids_are_kept_and_tokens_reindexed(tmp_path: Path) -> None:
    ml = convert(write_movielens_csv(tmp_path / "r.csv"), "movielens", None)
    assert ml.user_ids is None and ml.path is None
    assert sorted(set(ml.sessions.user_id.tolist())) == [3, 7, 9]
    rb = convert(write_recbole(tmp_path / "r.inter"), "recbole", None)
    assert rb.user_ids.tolist() == ["u3", "u7", "u9"]
    assert sorted(set(rb.sessions.user_id.tolist())) == [0, 1, 2]
    assert rb.sessions.meta["user_ids"] == ["u3", "u7", "u9"]


@pytest.mark.parametrize(("threshold", "clicks"), [(4.0, 5), (5.0, 2), (1.0, 8)])
def test_rating_threshold(tmp_path: Path, threshold: float, clicks: int) -> None:
    src = write_movielens_csv(tmp_path / "r.csv")
    s = convert(src, "movielens", None, rating_threshold=threshold).sessions
    assert int(s.clicks.sum()) == clicks
    np.testing.assert_array_equal(s.reward, s.clicks[:, 0])  # no watch data: reward = click


def test_session_gap_argument(tmp_path: Path) -> None:
    src = write_movielens_csv(tmp_path / "r.csv")
    wide = convert(src, "movielens", None, session_gap_minutes=60).sessions
    narrow = convert(src, "movielens", None, session_gap_minutes=5).sessions
    assert wide.n_sessions == 4  # user 7: 0 .. 71 min and day 2; user 3; user 9
    assert narrow.n_sessions == 7  # every gap but user 3's one minute splits
    with pytest.raises(ConfigError, match=r"session_gap_minutes=0 must be > 0"):
        convert(src, "movielens", None, session_gap_minutes=0)


def test_kuairand_watch_and_likes(tmp_path: Path) -> None:
    s = convert(write_kuairand(tmp_path / "k.csv"), "kuairand", None).sessions
    clicked = s.clicks[:, 0]
    np.testing.assert_array_equal(s.watch_time[clicked], 12.0)
    assert (s.watch_time[~clicked] == 0).all() and (s.watch_fraction[~clicked] == 0).all()
    durations = (np.array([ITEMS[i] for i in s.slate_ids[:, 0]]) % 7 + 1) * 10.0
    np.testing.assert_allclose(s.watch_fraction[clicked], np.minimum(12 / durations, 1)[clicked])
    assert s.liked.sum() == 2 and not (s.liked & ~clicked).any()
    median = np.median([(i % 7 + 1) * 10.0 for _, i, _, _ in EVENTS])
    np.testing.assert_allclose(s.reward, clicked + s.watch_time / median, rtol=1e-6)


def test_kuairec_clicks_from_watch_ratio(tmp_path: Path) -> None:
    src = write_kuairec(tmp_path / "k.csv")
    s = convert(src, "kuairec", None).sessions
    ratings = np.array([EVENTS[k][3] for k in expected_rows()])
    np.testing.assert_array_equal(s.clicks[:, 0], ratings / 2 >= 2.0)
    np.testing.assert_allclose(s.watch_fraction, np.where(ratings >= 4, 1.0, 0.0))
    loose = convert(src, "kuairec", None, watch_ratio_threshold=1.0).sessions
    np.testing.assert_array_equal(loose.clicks[:, 0], ratings >= 2)


def test_layouts_are_listed() -> None:
    assert set(LAYOUTS) == {"recbole", "movielens", "kuairand", "kuairec"}


# -------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("layout", "filename", "text", "message"),
    [
        pytest.param(
            "movielens",
            "ratings.csv",
            "userId,movieId,rating,timestamp\n1,2,4.0,100\n1,3,4.0,soon\n",
            r"ratings.csv: row 1 \(line 3\), column 'timestamp': 'soon' is not a number",
            id="text-timestamp",
        ),
        pytest.param(
            "movielens",
            "ratings.dat",
            "1::2::4::100\n1::3::five::200\n",
            r"ratings.dat: row 1 \(line 2\), column 'rating': 'five' is not a number",
            id="dat-text-rating",
        ),
        pytest.param(
            "recbole",
            "x.inter",
            "user_id:token\titem_id:token\trating:float\n1\t2\t4\n",
            r"x.inter: the columns \['timestamp'\] are missing",
            id="recbole-no-time",
        ),
        pytest.param(
            "kuairand",
            "k.csv",
            "user_id,video_id,is_click\n1,2,1\n",
            r"k.csv: no time column; give 'time_ms'",
            id="kuai-no-time",
        ),
        pytest.param(
            "kuairand",
            "k.csv",
            "user_id,time_ms\n1,100\n",
            r"k.csv: the columns \['video_id'\] are missing",
            id="kuai-no-item",
        ),
        pytest.param(
            "kuairand",
            "k.csv",
            "user_id,video_id,time_ms\n1,2,100\n,3,200\n",
            r"k.csv: row 1 \(line 3\), column 'user_id': missing id",
            id="missing-user",
        ),
        pytest.param(
            "movielens",
            "ratings.csv",
            "userId,movieId,rating,timestamp\n",
            r"ratings.csv: no events to convert",
            id="empty",
        ),
    ],
)
def test_bad_input_names_file_row_and_column(
    tmp_path: Path, layout: str, filename: str, text: str, message: str
) -> None:
    src = tmp_path / filename
    src.write_text(text)
    with pytest.raises(ReplayDataError, match=message):
        convert(src, layout, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_unknown_layout_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown layout 'netflix'; choose one of \['kuairand'"):
        convert(tmp_path / "x.csv", "netflix", tmp_path / "out.parquet")
    with pytest.raises(ReplayDataError, match=r"x.csv does not exist"):
        convert(tmp_path / "x.csv", "movielens", tmp_path / "out.parquet")


def test_failed_conversion_never_overwrites_the_output(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out" / "log.parquet"
    convert(write_movielens_csv(tmp_path / "good.csv"), "movielens", out)
    before = out.read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating,timestamp\n1,2,4.0,100\n1,3,x,200\n")
    with pytest.raises(ReplayDataError, match=re.escape(str(bad))):
        convert(bad, "movielens", out)
    assert out.read_bytes() == before

    # a write that dies half-way leaves the old file and no temporary file
    def dies(table: object, where: object, **kwargs: object) -> None:
        Path(str(where)).write_bytes(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", dies)
    with pytest.raises(OSError, match="disk full"):
        convert(write_kuairand(tmp_path / "k.csv"), "kuairand", out)
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["log.parquet"]
