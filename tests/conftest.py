"""Test-wide settings."""

import os

# Small dense bandit updates are slower with a threaded BLAS on a busy 2-core machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
