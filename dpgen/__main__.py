"""`python -m dpgen` / `accelerate launch -m dpgen build ...`."""

import sys

from dpgen.cli import main

sys.exit(main())
