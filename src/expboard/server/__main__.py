"""``python -m expboard.server ...``: the same as ``expboard server ...``."""

import sys

from .serve import main

sys.exit(main())
