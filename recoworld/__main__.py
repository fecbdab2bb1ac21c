"""``python -m recoworld``: the ``recoworld`` command."""

import sys

from recoworld.cli.main import main

sys.exit(main())
