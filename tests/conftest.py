"""Session-wide settings: the suite never reaches the network and never touches ~/.cache.

The Hub variables are set before any test module imports huggingface_hub (it reads them at
import): without them an id that is not on disk is retried against the Hub for ~25 s.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny-pipeline cache for the whole session (subprocesses inherit it)."""
    root = tmp_path_factory.getbasetemp() / "dpgen-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DPGEN_CACHE", str(root))
        yield root
