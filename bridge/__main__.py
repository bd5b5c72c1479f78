"""``python -m bridge`` runs the ``loginbridge`` command."""

import sys

from bridge.cli import main

sys.exit(main())
