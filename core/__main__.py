"""``python -m core`` is the ``socialbot`` command."""

import sys

from core.cli import main

sys.exit(main())
