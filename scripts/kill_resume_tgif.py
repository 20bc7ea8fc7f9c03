#!/usr/bin/env python
"""Kill `dpeval tgif` with SIGKILL at random moments, resume it each time, compare the end result
with an uninterrupted run of the same settings.

Every attempt runs ``dpeval tgif ... --resume-from-checkpoint latest`` in the same output folder
and is killed at a random moment (`PHASES`): while loading, while training (within a quarter of
the reference's training time after the attempt's first step, so a run is killed several times
on its way), or later (validating, writing a checkpoint, scoring, publishing; a finished run
resumed from its last checkpoint scores and publishes again). An attempt that finishes before
its kill does not count as one. After ``--kills`` kills one
last attempt runs to the end. Printed: each kill (delay, the newest complete checkpoint before
and after, whether a half-written checkpoint was left), then the comparison: SHA-256 of
``best/model.safetensors``, the F1 tables and training summary of ``results.json``, the
per-image scores and the loss per step. Exit status 1 on any difference.

Runs on the embedded default (CPU, tiny models, the TGIF-shaped fixture), e.g.::

    python scripts/kill_resume_tgif.py --kills 10 --workdir /tmp/kill-tgif
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import SegformerConfig

from dpeval.tgif.fixture import make_tgif_fixture
from dpgen.checkpoints import incomplete_checkpoints, list_checkpoints
from dptrain.curves import read_metrics
from dptrain.model import DiffusionPrint

TINY_SEGFORMER = {"hidden_sizes": [16, 32, 40, 64], "depths": [1, 1, 1, 1],
                  "num_attention_heads": [1, 1, 1, 1], "decoder_hidden_size": 32}  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, required=True, help="scratch folder (created)")
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs before the last attempt")
    p.add_argument("--max-steps", type=int, default=100, help="fine-tuning steps (5 per epoch)")
    p.add_argument("--data", help="TGIF-shaped tree (default: build the fixture in --workdir)")
    p.add_argument("--extractor", help="extractor folder (default: a tiny random DiffusionPrint)")
    p.add_argument("--rgb-encoder", help="SegFormer config folder (default: a tiny one)")
    p.add_argument("--seed", type=int, default=0, help="seeds the kill delays")
    p.add_argument("--threads", default="1", help="OMP_NUM_THREADS of every run")
    return p.parse_args()


def prepare(args: argparse.Namespace) -> tuple[str, str, str]:
    """The data, extractor and RGB-encoder specs (tiny ones built in the workdir if not given)."""
    work = args.workdir
    data = args.data or str(work / "fixture")
    if not args.data and not Path(data).is_dir():
        make_tgif_fixture(data)
    extractor = args.extractor or str(work / "tiny-dp")
    if not args.extractor:
        torch.manual_seed(0)
        DiffusionPrint(out_channels=4, width=8, depth=3).save_pretrained(extractor)
    rgb = args.rgb_encoder or str(work / "tiny-segformer")
    if not args.rgb_encoder:
        SegformerConfig(**TINY_SEGFORMER).save_pretrained(rgb)
    return data, extractor, rgb


def command(data: str, extractor: str, rgb: str, out: Path, max_steps: int) -> list[str]:
    return [
        sys.executable, "-m", "dpeval.cli", "tgif", "--extractor", extractor, "--data", data,
        "--rgb-encoder", rgb, "--rgb-encoder-init", "random", "--crop-size", "32",
        "--batch-size", "3", "--effective-batch", "6", "--num-workers", "1",
        "--figure-images", "0", "--max-steps", str(max_steps), "--output-dir", str(out),
        "--resume-from-checkpoint", "latest", "--name", "run",
    ]  # fmt: skip


def newest(out: Path) -> str:
    found = list_checkpoints(out) if out.is_dir() else []
    return found[-1].name if found else "-"


def _loss_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    return sum('"loss"' in line for line in path.read_text().splitlines())


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def reference_run(cmd: list[str], out: Path, env: dict, steps: int) -> dict:
    """Run to the end; returns when (s after the start) it logged its first and last step, and
    when it ended."""
    start, marks = time.monotonic(), {}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:
        logged = _loss_lines(out / "metrics.jsonl")
        if logged and "first" not in marks:
            marks["first"] = time.monotonic() - start
        if logged >= steps and "last" not in marks:
            marks["last"] = time.monotonic() - start
        time.sleep(0.02)
    if proc.returncode != 0:
        sys.exit(f"reference run failed with status {proc.returncode}")
    marks["end"] = time.monotonic() - start
    marks.setdefault("first", marks["end"] / 2)
    marks.setdefault("last", marks["end"])
    return marks


def attempt(cmd: list[str], out: Path, env: dict, phase: str, delay: float) -> bool:
    """Run once and SIGKILL it ``delay`` s after its start (``load``), after it logs its first
    training step (``train``) or after its trackers start (``late``: also a run that resumes
    from its last checkpoint and only scores and publishes). Returns whether it was killed."""
    metrics = out / "metrics.jsonl"
    count = _loss_lines if phase == "train" else _lines
    before = count(metrics)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    clock = time.monotonic() if phase == "load" else None
    while proc.poll() is None:
        if clock is None and count(metrics) > before:
            clock = time.monotonic()
        if clock is not None and time.monotonic() - clock >= delay:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    return False


#: Kill phases and their odds while the run still trains, and once its training is complete.
PHASES = {"training": {"load": 0.2, "train": 0.6, "late": 0.2}, "done": {"load": 0.5, "late": 0.5}}


def killed_runs(cmd: list[str], out: Path, env: dict, args, marks: dict) -> list:
    """Start, kill, repeat until ``--kills`` kills, then run once to the end.

    Delays: ``load`` uniform in the reference's start-up time; ``train`` uniform in a quarter
    of its training time (so a run is killed several times while training); ``late`` uniform
    in its time from the first step to the end (validation, checkpoints, scoring, publishing).
    """
    rng, log, attempts = random.Random(args.seed), [], 0
    spans = {"load": marks["first"], "train": (marks["last"] - marks["first"]) / 4,
             "late": marks["end"] - marks["first"]}  # fmt: skip
    while sum(k["killed"] for k in log) < args.kills and attempts < 3 * args.kills:
        attempts += 1
        stage = "done" if newest(out) == f"checkpoint-{args.max_steps}" else "training"
        phase = rng.choices(list(PHASES[stage]), list(PHASES[stage].values()))[0]
        delay, before = rng.uniform(0, spans[phase]), newest(out)
        killed = attempt(cmd, out, env, phase, delay)
        log.append({"phase": phase, "delay_s": round(delay, 2), "killed": killed,
                    "before": before, "after": newest(out),
                    "partial_checkpoint": bool(incomplete_checkpoints(out))})  # fmt: skip
    final = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if final.returncode != 0:
        sys.exit(f"last resumed run failed with status {final.returncode}")
    return log


def fingerprint(out: Path) -> dict:
    """What must be identical: weights, tables, training summary, per-image scores, losses."""
    results = json.loads((out / "results.json").read_text())
    training = {k: v for k, v in results["training"].items() if k != "config"}
    rows = (out / "per_image.jsonl").read_text()
    losses = read_metrics(out / "metrics.jsonl")["loss"]
    return {
        "best/model.safetensors": hashlib.sha256((out / "best" / "model.safetensors").read_bytes()).hexdigest(),
        "results f1 + n_images": hashlib.sha256(json.dumps([results["f1"], results["n_images"]], sort_keys=True).encode()).hexdigest(),
        "training": json.dumps(training, sort_keys=True),
        "per_image.jsonl": hashlib.sha256(rows.replace(str(out), "OUT").encode()).hexdigest(),
        "loss per step": hashlib.sha256(json.dumps(losses).encode()).hexdigest(),
    }  # fmt: skip


def main() -> int:
    args = parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    data, extractor, rgb = prepare(args)
    env = {**os.environ, "OMP_NUM_THREADS": args.threads, "HF_HUB_OFFLINE": "1"}
    ref, killed = args.workdir / "reference", args.workdir / "killed"
    for folder in (ref, killed):
        if folder.exists():
            sys.exit(f"{folder}: exists; use a fresh --workdir")
    marks = reference_run(command(data, extractor, rgb, ref, args.max_steps), ref, env,
                          args.max_steps)  # fmt: skip
    print(
        f"reference run: {marks['end']:.1f} s; steps 1..{args.max_steps} logged at "
        f"{marks['first']:.1f}..{marks['last']:.1f} s"
    )
    cmd = command(data, extractor, rgb, killed, args.max_steps)
    log = killed_runs(cmd, killed, env, args, marks)
    print(
        f"{sum(k['killed'] for k in log)} SIGKILLs in {len(log)} attempts, then one run to "
        "the end; delay after the start (load), after the attempt's first step (train) or "
        "after its trackers start (late)"
    )
    print(
        "| attempt | phase | delay s | killed | newest checkpoint before | after | "
        "half-written left |"
    )
    print("|---|---|---|---|---|---|---|")
    for i, k in enumerate(log, 1):
        print(
            f"| {i} | {k['phase']} | {k['delay_s']} | {k['killed']} | {k['before']} | "
            f"{k['after']} | {k['partial_checkpoint']} |"
        )
    a, b = fingerprint(ref), fingerprint(killed)
    for key in a:
        same = "identical" if a[key] == b[key] else "DIFFERENT"
        print(f"{key}: {same} ({a[key][:16]} vs {b[key][:16]})")
    return 0 if a == b else 1


if __name__ == "__main__":
    sys.exit(main())
