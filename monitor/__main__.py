"""``python -m monitor`` is ``account-monitor``."""

import sys

from monitor.cli import main

sys.exit(main())
