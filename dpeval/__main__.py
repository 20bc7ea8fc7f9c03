"""``python -m dpeval``."""

import sys

from dpeval.cli import main

sys.exit(main())
