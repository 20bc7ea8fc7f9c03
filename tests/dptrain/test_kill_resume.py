"""scripts/kill_resume.py on a short schedule: SIGKILLs at random moments, then the same result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kill_resume.py"


@pytest.mark.slow
def test_dptrain_killed_at_random_moments_resumes_to_the_same_weights(tiny_build, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "dptrain", "--kills", "2", "--build", str(tiny_build),
         "--workdir", str(tmp_path)],  # fmt: skip
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "dptrain resumed == uninterrupted: True (2 kills" in proc.stdout
