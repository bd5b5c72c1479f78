"""``python -m bridge.idpsim``."""

import sys

from bridge.idpsim.cli import main

sys.exit(main())
