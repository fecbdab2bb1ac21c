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
