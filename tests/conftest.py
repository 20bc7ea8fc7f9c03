"""Session-wide settings: the suite never reaches the network.

Set before any test module imports huggingface_hub (it reads them at import): without them an
id that is not on disk is retried against the Hub for ~25 s before failing.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
