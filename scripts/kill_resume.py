"""Kill a resumable command with SIGKILL at random moments, resume it, compare with a clean run.

For each scenario: one uninterrupted run gives the reference digest; then the same command is
started again and again in one folder, each time killed with SIGKILL after a random delay
(uniform over the reference run's duration), until a run finishes: that chain's result must
equal the reference, nothing lost and nothing duplicated. Chains are repeated until ``--kills``
kills have landed on running processes. Scenarios:

- ``dpgen``: ``dpgen build`` of the three tiny generators at 256 px, ``--batch-size 3``,
  shards of one image (digest: `dpgen.info.content_digest`, every row in order).
- ``dptrain``: ``accelerate launch -m dptrain --preset tiny`` on that build with a checkpoint
  every 5 steps and ``--resume-from-checkpoint latest`` (digest: the final weights).

Usage::

    python scripts/kill_resume.py dpgen dptrain --kills 10 [--workdir DIR] [--seed 0]

Prints one line per kill and ``<scenario> resumed == uninterrupted: True`` at the end; exits 1
if any scenario differs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from safetensors.numpy import load_file

from dpgen.fixtures import small_manifests
from dpgen.info import content_digest


@dataclass
class Scenario:
    """A command that resumes in place: ``command(out)`` and ``digest(out)``."""

    name: str
    command: Callable[[Path], list[str]]
    digest: Callable[[Path], str]
    progress: Callable[[Path], str]


def dpgen_scenario(work: Path) -> Scenario:
    manifests = small_manifests(work / "manifests")

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "dpgen", "build", "--generators", ",".join(manifests),
                "--num-images", "3", "--num-generated", "2", "--patch-size", "32",
                "--shard-size", "1", "--pass-size", "2", "--batch-size", "3", "--out", str(out)]  # fmt: skip

    def progress(out: Path) -> str:
        return f"{len(list((out / 'ledger').glob('*.json')))} shard(s) committed"

    return Scenario("dpgen", command, content_digest, progress)


def dptrain_scenario(work: Path, build: Path) -> Scenario:
    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
                "-m", "dptrain", "--preset", "tiny", "--data", str(build), "--output-dir", str(out),
                "--max-steps", "120", "--checkpointing-steps", "10", "--checkpoints-total-limit", "1",
                "--resume-from-checkpoint", "latest"]  # fmt: skip

    def digest(out: Path) -> str:
        weights = load_file(str(out / "model.safetensors"))
        h = hashlib.sha256()
        for key in sorted(weights):
            h.update(key.encode() + weights[key].tobytes())
        return h.hexdigest()

    def progress(out: Path) -> str:
        return "checkpoints " + ",".join(sorted(p.name for p in out.glob("*checkpoint-*")))

    return Scenario("dptrain", command, digest, progress)


def _run(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def kill_and_resume(scenario: Scenario, work: Path, kills: int, rng: random.Random) -> bool:
    """Reference run, then chains of runs killed at random moments, each resumed to the end.

    A chain starts in an empty folder; each run of it is killed after a delay uniform over the
    reference run's duration, until a run finishes before its kill: the chain's result must
    equal the reference. Chains go on until ``kills`` kills have landed on running processes.
    """
    reference = work / f"{scenario.name}-reference"
    duration = _run(scenario.command(reference))
    expected = scenario.digest(reference)
    print(f"{scenario.name}: uninterrupted run {duration:.1f} s, digest {expected[:16]}")
    out, landed, chains, same = work / f"{scenario.name}-killed", 0, 0, True
    while landed < kills or out.exists():
        # its own process group: a SIGKILL takes the launcher and the ranks it started, as a
        # node failure would (killing `accelerate launch` alone leaves its rank running)
        proc = subprocess.Popen(
            scenario.command(out),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        delay = rng.uniform(0.5, duration) if landed < kills else None
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            landed += 1
            print(f"  kill {landed} at {delay:.1f} s: {scenario.progress(out)}")
            continue
        if proc.returncode != 0:
            raise RuntimeError(f"{scenario.name}: a resumed run failed (exit {proc.returncode})")
        chains += 1
        result = scenario.digest(out) == expected
        same &= result
        print(f"  chain {chains} finished: equal to the uninterrupted run: {result}")
        shutil.rmtree(out)
    print(f"{scenario.name} resumed == uninterrupted: {same} ({landed} kills, {chains} chains)")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="+", choices=("dpgen", "dptrain"))
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--build", type=Path, help="dptrain's data (default: the dpgen scenario's)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kill-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    ok = True
    for name in args.scenarios:
        if name == "dpgen":
            ok &= kill_and_resume(dpgen_scenario(work), work, args.kills, rng)
        else:
            build = args.build or work / "dpgen-reference"
            if not (build / "dataset_dict.json").exists():
                _run(dpgen_scenario(work).command(build))
            ok &= kill_and_resume(dptrain_scenario(work, build), work, args.kills, rng)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
