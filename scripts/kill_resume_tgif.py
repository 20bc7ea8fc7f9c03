#!/usr/bin/env python
"""Kill `dpeval tgif` with SIGKILL at random moments, resume it each time, compare the end result
with an uninterrupted run of the same settings.

Every attempt runs ``dpeval tgif ... --resume-from-checkpoint latest`` in the same output folder
and is killed at a random moment (`killed_runs`): while loading, at a random training step
(in the step, its validation or its checkpoint save), or, once training is complete, while
scoring and publishing (a finished run resumed from its last checkpoint scores and publishes
again). An attempt that finishes before its kill does not count as one. After ``--kills`` kills one
last attempt runs to the end. Printed: each kill (when, the newest complete checkpoint before
and after, whether a half-written checkpoint was left), then the comparison: SHA-256 of
``best/model.safetensors`` and of the last checkpoint's weights and optimizer state, the F1
tables and training summary of ``results.json``, the per-image scores and the loss per step. Exit status 1 on any difference.

With ``--decoder diffiml`` the runs use DiffIML's diffusion decoder: each attempt first trains
the LightVAE into ``OUTPUT/lightvae`` (or reuses a complete one). The first kill lands while it
trains (``lightvae``: uniform in the reference's LightVAE time after its metrics file appears);
kills while loading may land there too. The LightVAE's weights join the comparison.

Runs on the embedded default (CPU, tiny models, the TGIF-shaped fixture), e.g.::

    python scripts/kill_resume_tgif.py --kills 10 --workdir /tmp/kill-tgif
    python scripts/kill_resume_tgif.py --kills 10 --decoder diffiml --workdir /tmp/kill-diffiml
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
    p.add_argument(
        "--decoder", default="mlp", choices=("mlp", "diffiml"), help="dpeval tgif --decoder"
    )
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


def command(
    data: str, extractor: str, rgb: str, out: Path, max_steps: int, decoder: str
) -> list[str]:
    return [
        sys.executable, "-m", "dpeval.cli", "tgif", "--extractor", extractor, "--data", data,
        "--rgb-encoder", rgb, "--rgb-encoder-init", "random", "--crop-size", "32",
        "--batch-size", "3", "--effective-batch", "6", "--num-workers", "1",
        "--figure-images", "0", "--max-steps", str(max_steps), "--output-dir", str(out),
        "--resume-from-checkpoint", "latest", "--name", "run", "--decoder", decoder,
    ]  # fmt: skip


#: The LightVAE phase of a diffiml run: its metrics file (created as it starts) and its report.
VAE_METRICS = Path("lightvae") / "metrics.jsonl"
VAE_DONE = Path("lightvae") / "reconstruction.json"


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
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    while proc.poll() is None:
        if (out / VAE_METRICS).is_file() and "vae_start" not in marks:
            marks["vae_start"] = time.monotonic() - start
        if (out / VAE_DONE).is_file() and "vae_end" not in marks:
            marks["vae_end"] = time.monotonic() - start
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


def _records(path: Path, skip: int) -> list[dict]:
    """The JSON records of ``path`` after its first ``skip`` lines (a half-written one dropped)."""
    out = []
    for line in path.read_text().splitlines()[skip:] if path.is_file() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def attempt(cmd: list[str], out: Path, env: dict, phase: str, when: float, jitter: float) -> bool:
    """Run once and SIGKILL it: ``load``: ``when`` s after its start; ``lightvae``: ``when`` s
    after the LightVAE's metrics file appears; ``step``: ``jitter`` s after it logs training
    step ``when`` (so in that step, its validation or its checkpoint); ``late``: ``when`` s
    after its trackers start (scoring and publishing, for a run whose training is complete).
    Returns whether it was killed (False: it finished first)."""
    metrics, skip = out / "metrics.jsonl", _lines(out / "metrics.jsonl")
    # its own process group, killed whole: data-loader workers go with it, as on a node failure
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    fire = time.monotonic() + when if phase == "load" else None
    while proc.poll() is None:
        if fire is None and phase == "lightvae" and (out / VAE_METRICS).is_file():
            fire = time.monotonic() + when
        if fire is None:
            new = _records(metrics, skip)
            if phase == "step" and any(r.get("step", 0) >= when and "loss" in r for r in new):
                fire = time.monotonic() + jitter
            elif phase == "late" and new:
                fire = time.monotonic() + when
        if fire is not None and time.monotonic() >= fire:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    return False


def _step(checkpoint: str) -> int:
    return 0 if checkpoint == "-" else int(checkpoint.split("-")[1])


def killed_runs(cmd: list[str], out: Path, env: dict, args, marks: dict) -> list:
    """Start, kill, repeat until ``--kills`` kills, then run once to the end.

    While the run trains, four kills in five come at a training step drawn uniformly within the
    next third of the remaining steps (plus up to half a second), the others while loading
    (uniform in the reference's start-up time); once training is complete, half while loading
    and half while scoring and publishing (uniform in the reference's time after its last step).
    With a LightVAE phase (diffiml), the first kill comes while the LightVAE trains.
    """
    rng, log, attempts = random.Random(args.seed), [], 0
    while sum(k["killed"] for k in log) < args.kills and attempts < 3 * args.kills:
        attempts += 1
        before = newest(out)
        done = _step(before) >= args.max_steps
        phase = rng.choices(
            ["load", "late"] if done else ["load", "step"], [1, 1] if done else [1, 4]
        )[0]
        if attempts == 1 and "vae_end" in marks:
            phase = "lightvae"
            when = rng.uniform(0, marks["vae_end"] - marks["vae_start"])
        elif phase == "step":
            left = args.max_steps - _step(before)
            when = _step(before) + rng.randint(1, max(1, left // 3))
        else:
            when = rng.uniform(
                0, marks["first"] if phase == "load" else marks["end"] - marks["last"]
            )
        killed = attempt(cmd, out, env, phase, when, rng.uniform(0, 0.5))
        log.append({"phase": phase, "at": round(when, 2), "killed": killed, "before": before,
                    "after": newest(out), "partial_checkpoint": bool(incomplete_checkpoints(out))})  # fmt: skip
    final = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if final.returncode != 0:
        sys.exit(f"last resumed run failed with status {final.returncode}")
    return log


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(out: Path, steps: int) -> dict:
    """What must be identical: the validation-best and the last weights, optimizer state,
    tables, training summary, per-image scores, loss per step."""
    results = json.loads((out / "results.json").read_text())
    training = {k: v for k, v in results["training"].items() if k != "config"}
    rows = (out / "per_image.jsonl").read_text()
    losses = read_metrics(out / "metrics.jsonl")["loss"]
    vae = out / "lightvae" / "model.safetensors"
    return {
        **({"lightvae/model.safetensors": _sha(vae)} if vae.is_file() else {}),
        "best/model.safetensors": _sha(out / "best" / "model.safetensors"),
        f"checkpoint-{steps}/model.safetensors": _sha(out / f"checkpoint-{steps}" / "model.safetensors"),
        f"checkpoint-{steps}/optimizer.bin": _sha(out / f"checkpoint-{steps}" / "optimizer.bin"),
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
    marks = reference_run(command(data, extractor, rgb, ref, args.max_steps, args.decoder), ref,
                          env, args.max_steps)  # fmt: skip
    print(
        f"reference run: {marks['end']:.1f} s; steps 1..{args.max_steps} logged at "
        f"{marks['first']:.1f}..{marks['last']:.1f} s"
    )
    cmd = command(data, extractor, rgb, killed, args.max_steps, args.decoder)
    log = killed_runs(cmd, killed, env, args, marks)
    print(
        f"{sum(k['killed'] for k in log)} SIGKILLs in {len(log)} attempts, then one run to "
        "the end; 'at': seconds after the start (load), after the LightVAE starts (lightvae), "
        "the training step (step), seconds after the trackers start (late)"
    )
    print(
        "| attempt | phase | at | killed | newest checkpoint before | after | half-written left |"
    )
    print("|---|---|---|---|---|---|---|")
    for i, k in enumerate(log, 1):
        print(
            f"| {i} | {k['phase']} | {k['at']} | {k['killed']} | {k['before']} | "
            f"{k['after']} | {k['partial_checkpoint']} |"
        )
    a, b = fingerprint(ref, args.max_steps), fingerprint(killed, args.max_steps)
    for key in a:
        same = "identical" if a[key] == b[key] else "DIFFERENT"
        print(f"{key}: {same} ({a[key][:16]} vs {b[key][:16]})")
    return 0 if a == b else 1


if __name__ == "__main__":
    sys.exit(main())
