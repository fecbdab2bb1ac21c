"""Logged sessions: the one log schema, loading and converting logs, Replay-v0, off-policy
estimators. Calibration (`recoworld.replay.calibration`) and OPE validation against the
simulator (`recoworld.replay.validation`) are imported from their modules."""

from recoworld.replay.converters import (
    LAYOUTS,
    ConversionResult,
    Interactions,
    convert,
    to_sessions,
)
from recoworld.replay.env import ReplayEnv, ReplayStats, log_catalog, register_replay_env
from recoworld.replay.loaders import Sessions, load_sessions
from recoworld.replay.ope import (
    IPS,
    SNIPS,
    ClippedIPS,
    DoublyRobust,
    IndependentIPS,
    PseudoInverse,
    RewardInteractionIPS,
    SlateIPS,
)
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
    "IPS",
    "LAYOUTS",
    "SNIPS",
    "ClippedIPS",
    "Column",
    "ConversionResult",
    "DoublyRobust",
    "IndependentIPS",
    "Interactions",
    "PseudoInverse",
    "ReplayEnv",
    "ReplayStats",
    "RewardInteractionIPS",
    "Sessions",
    "SlateIPS",
    "TrajectoryWriter",
    "convert",
    "load_sessions",
    "log_catalog",
    "pyarrow_schema",
    "read_trajectories",
    "register_replay_env",
    "schema_table",
    "to_sessions",
    "trajectory_files",
]
