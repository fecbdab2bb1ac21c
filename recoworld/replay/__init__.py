"""Logged sessions: the one log schema, its Parquet writer and reader."""

from recoworld.replay.schema import (
    COLUMN_NAMES,
    COLUMNS,
    Column,
    TrajectoryWriter,
    pyarrow_schema,
    read_trajectories,
    schema_table,
    trajectory_files,
)

__all__ = [
    "COLUMNS",
    "COLUMN_NAMES",
    "Column",
    "TrajectoryWriter",
    "pyarrow_schema",
    "read_trajectories",
    "schema_table",
    "trajectory_files",
]

# loading, converting and replaying logs (issue 7)
from recoworld.replay.converters import (
    LAYOUTS,
    ConversionResult,
    Interactions,
    convert,
    to_sessions,
)
from recoworld.replay.env import ReplayEnv, ReplayStats, log_catalog, register_replay_env
from recoworld.replay.loaders import Sessions, load_sessions

__all__ += [
    "LAYOUTS",
    "ConversionResult",
    "Interactions",
    "ReplayEnv",
    "ReplayStats",
    "Sessions",
    "convert",
    "load_sessions",
    "log_catalog",
    "register_replay_env",
    "to_sessions",
]
