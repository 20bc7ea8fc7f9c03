"""`dpeval tgif` killed with SIGKILL and resumed ends exactly where an uninterrupted run ends.

Runs scripts/kill_resume_tgif.py (subprocesses of the real command) with a few kills; the
committed script does >= 10 (see its docstring).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "kill_resume_tgif.py"


@pytest.mark.slow
@pytest.mark.parametrize(("decoder", "kills", "steps"), [("mlp", 3, 10), ("diffiml", 2, 6)])
def test_killed_and_resumed_run_matches_the_uninterrupted_one(
    decoder, kills, steps, tgif_root, tiny_extractor_dir, tiny_segformer_dir, tmp_path
):
    argv = [
        sys.executable, str(SCRIPT), "--kills", str(kills), "--max-steps", str(steps),
        "--workdir", str(tmp_path / "work"), "--data", str(tgif_root), "--decoder", decoder,
        "--extractor", str(tiny_extractor_dir), "--rgb-encoder", str(tiny_segformer_dir),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert f"{kills} SIGKILLs" in done.stdout
    keys = ("best/model", f"checkpoint-{steps}/model", f"checkpoint-{steps}/optim", "results f1")
    keys += ("training", "per_image", "loss per step")
    if decoder == "diffiml":  # the first kill came while the LightVAE trained
        keys += ("lightvae/model",)
        assert "| 1 | lightvae |" in done.stdout
    for key in keys:
        line = next(line for line in done.stdout.splitlines() if line.startswith(key))
        assert ": identical" in line, line
