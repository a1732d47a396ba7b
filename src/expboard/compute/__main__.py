"""``python -m expboard.compute RUN_ID``: the run agent (see :mod:`expboard.compute.agent`)."""

import sys

from .agent import main

sys.exit(main())
