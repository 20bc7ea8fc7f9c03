"""`dpeval tgif` end to end: read TGIF, fine-tune the Lite Baseline, score the test split, report.

Writes into the output folder: ``results.json`` (F1 per convention x generator x mask type,
image counts, the reader's report, the run's settings), ``per_image.jsonl``, ``table.md``
(Table 2-shaped, with the delta to ``--baseline``), ``qualitative.png``, ``metrics.jsonl``
(loss and validation F1 per step), the validation-best localizer as a Hub model (``best/``:
config.json, model.safetensors, README.md with the F1 tables, training_curves.png) and the
latest complete ``checkpoint-<step>``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from dpeval.extractors import load_extractor
from dpeval.tgif import card
from dpeval.tgif.evaluate import aggregate, load_mask, load_rgb, predict, score_samples
from dpeval.tgif.finetune import (
    CURVE_PANELS,
    CURVES_FILE,
    FinetuneConfig,
    finetune,
)
from dpeval.tgif.lite_baseline import MIT_B2, LiteBaseline, load_rgb_encoder
from dpeval.tgif.reader import GENERATORS, MASK_GROUPS, TGIFIndex, TGIFSample, read_tgif
from dpeval.tgif.report import load_results, markdown_table, qualitative_figure, results_json
from dpgen.checkpoints import list_checkpoints, resolve_checkpoint
from dpgen.errors import InputError
from dpgen.options import option
from dptrain.curves import plot_curves
from dptrain.tracker import METRICS_FILE, log_with, tracker_config

logger = logging.getLogger(__name__)

BEST_DIR = "best"


@dataclass(kw_only=True)
class TgifConfig(FinetuneConfig):
    """``dpeval tgif``: extractor, data, output, RGB encoder, report; fine-tuning settings."""

    extractor: str = option(help="DiffusionPrint folder / Hub id, noiseprint++:PATH, or random")
    data: str = option(help="TGIF root (SD2-fr, masks, ... with training/validation/testing)")
    output_dir: str = option("runs/tgif", help="results, best model, checkpoints")
    rgb_encoder: str = option(MIT_B2, help="SegFormer MiT id or local folder")
    rgb_encoder_init: str = option(
        "imagenet",
        help="imagenet: pretrained weights (fails if unreachable); random: no pretraining",
        choices=("imagenet", "random"),
    )
    baseline: str | None = option(
        None, help="results.json of another run: adds its row and the delta"
    )
    figure_images: int = option(8, help="test images in qualitative.png (0: none)")
    name: str | None = option(None, help="row label of this run (default: the extractor spec)")
    json: bool = option(False, help="print results JSON instead of the markdown table")
    push_to_hub: bool = option(False, help="upload the validation-best model (best/) at the end")
    hub_model_id: str = option("", help="Hub repo id for --push-to-hub (default: output-dir name)")


@dataclass
class TgifInputs:
    """What `check_inputs` read: the index, the three splits, the baseline, the checkpoint."""

    index: TGIFIndex
    train: list[TGIFSample]
    val: list[TGIFSample]
    test: list[TGIFSample]
    baseline: dict | None
    resume: Path | None


def run_tgif(config: TgifConfig) -> tuple[dict | None, str]:
    """Fine-tune and evaluate; returns the results dict and the markdown table (main process;
    other processes get ``(None, "")``).

    Raises:
        InputError: a bad input (`check_inputs`, `build_model`), before any fine-tuning.
    """
    inputs = check_inputs(config)
    model = build_model(config)
    out = Path(config.output_dir)
    # Ranks started by a launcher on a machine without a GPU: accelerate picks gloo only when
    # told to use the CPU (as dptrain does).
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=multi_cpu,
        log_with=log_with(config.report_to, out),
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    try:
        logger.info("%d process(es) on %s", accelerator.num_processes, accelerator.device)
        accelerator.init_trackers("dpeval-tgif", config=tracker_config(config.to_dict()))
        training = finetune(
            model, inputs.train, inputs.val, out, config, accelerator, inputs.resume
        )
        results, table = None, ""
        if accelerator.is_main_process:
            results, table = report(model, inputs, training, config, accelerator.device)
            publish(model, results, config)
        accelerator.wait_for_everyone()
    finally:
        accelerator.end_training()
    return results, table


def check_inputs(config: TgifConfig) -> TgifInputs:
    """Read and check every input named by ``config`` before any model is loaded.

    Raises:
        InputError: a bad ``--baseline``, ``--resume-from-checkpoint``, ``--hub-model-id`` or
            ``--output-dir`` (holding an earlier run's checkpoints without a resume), a split
            without a usable fake, or a mask that is not 0/255.
        FileNotFoundError: ``--data`` is not a folder.
    """
    baseline = load_results(config.baseline) if config.baseline else None
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: --output-dir exists and is not a folder")
    resume = resolve_checkpoint(config.resume_from_checkpoint, out)
    earlier = list_checkpoints(out) if out.is_dir() else []
    if earlier and not config.resume_from_checkpoint:
        raise InputError(
            f"{out}: holds {earlier[-1].name} of an earlier run; pass --resume-from-checkpoint "
            "latest to continue it, or choose another --output-dir"
        )
    if config.push_to_hub:
        card.check_repo_id(config.hub_model_id or out.resolve().name)
    if config.resume_from_checkpoint and resume is None:
        logger.info("no checkpoint in %s; starting a new run", out)
    index = read_tgif(config.data)
    _log_index(index)
    train, val, test = _splits(index, config.data)
    check_masks([*train, *val, *test])
    return TgifInputs(index, train, val, test, baseline, resume)


def check_masks(samples: list[TGIFSample]) -> None:
    """Read every mask the run will use once (0/255, 8-bit), so a bad one stops the run before
    fine-tuning rather than in the middle of it or of the scoring.

    Raises:
        dpgen.masks.MaskError: naming the first bad mask file.
    """
    paths = sorted({s.mask for s in samples})
    for path in tqdm(paths, desc="checking masks", unit="mask", leave=False):
        load_mask(path)


def _log_index(index: TGIFIndex) -> None:
    logger.info("%s", index.summary())
    for line in index.missing:
        logger.warning("left out: %s", line)
    for line in index.unmatched:
        logger.warning("unmatched: %s", line)


def _splits(index: TGIFIndex, data: str) -> tuple[list, list, list]:
    """Training and validation: FR semantic fakes; testing: every FR fake."""
    semantic = MASK_GROUPS["semantic"]
    splits = (
        ("training", index.select("training", semantic)),
        ("validation", index.select("validation", semantic)),
        ("testing", index.select("testing")),
    )
    for split, found in splits:
        if not found:
            raise InputError(
                f"{data}: no usable FR fake in the {split} split (see the reader's report above)"
            )
    return tuple(found for _, found in splits)


def build_model(config: TgifConfig) -> LiteBaseline:
    """The Lite Baseline around the frozen extractor, initialised from ``--seed``.

    Raises:
        InputError: an extractor or RGB encoder that cannot be loaded.
    """
    set_seed(config.seed)  # the same initialisation on every process and every resume
    # huggingface_hub prints "Loading weights from local directory" on stdout, which
    # belongs to the results (--json)
    with contextlib.redirect_stdout(sys.stderr):
        frozen = load_extractor(config.extractor).model
    rgb = load_rgb_encoder(config.rgb_encoder, config.rgb_encoder_init)
    return LiteBaseline.from_parts(rgb, frozen)


def report(model, inputs: TgifInputs, training: dict, config: TgifConfig, device) -> tuple:
    """Score the test split; write results.json, per_image.jsonl, table.md, qualitative.png.

    Returns:
        ``(results, table)``.
    """
    out = Path(config.output_dir)
    model.to(device)
    rows = score_samples(model, inputs.test, device)
    f1, counts = aggregate(rows)
    results = _results(config, f1, counts, training, inputs.index)
    (out / "results.json").write_text(results_json(results))
    with open(out / "per_image.jsonl", "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    table = markdown_table(results, inputs.baseline)
    (out / "table.md").write_text(table)
    if config.figure_images:
        shown = _spread(inputs.test, config.figure_images)
        maps = [predict(model, load_rgb(s.image), device) for s in shown]
        title = f"Lite Baseline + {results['name']}"
        qualitative_figure(shown, maps, out / "qualitative.png", title)
    logger.info("results in %s", out)
    return results, table


def _results(config: TgifConfig, f1: dict, counts: dict, training: dict, index: TGIFIndex) -> dict:
    return {
        "name": config.name or config.extractor,
        "framework": "lite-baseline",
        "extractor": config.extractor,
        "rgb_encoder": config.rgb_encoder,
        "rgb_encoder_init": config.rgb_encoder_init,
        "data": str(config.data),
        "f1": f1,
        "n_images": counts,
        "training": {**training, "config": config.to_dict()},
        "reader": {
            "counts": index.counts(),
            "originals": index.originals,
            "missing": index.missing,
            "unmatched": index.unmatched,
        },
    }


def publish(model: LiteBaseline, results: dict, config: TgifConfig) -> Path:
    """Write the validation-best model to ``best/`` (and its curves); upload it if asked."""
    out = Path(config.output_dir)
    best = card.save_localizer(model, out / BEST_DIR, results)
    plot_curves(out / METRICS_FILE, best / CURVES_FILE, CURVE_PANELS, f"dpeval tgif {out.name}")
    logger.info("validation-best localizer in %s", best)
    if config.push_to_hub:
        url = card.push_to_hub(best, config.hub_model_id or out.resolve().name)
        logger.info("pushed to %s", url)
    return best


def _spread(samples: list, n: int) -> list:
    """Up to ``n`` samples taken in turn from each generator x mask type, for the figure."""
    groups: dict = {}
    for s in samples:
        groups.setdefault((s.generator, s.mask_type), []).append(s)
    order = sorted(groups, key=lambda k: (list(GENERATORS).index(k[0]), k[1]))
    picked: list = []
    while len(picked) < n and any(groups[k] for k in order):
        for k in order:
            if groups[k] and len(picked) < n:
                picked.append(groups[k].pop(0))
    return picked
