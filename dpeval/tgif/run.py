"""`dpeval tgif` end to end: read TGIF, fine-tune the Lite Baseline, score the test split, report.

Writes into the output folder: ``results.json`` (F1 per convention x generator x mask type,
image counts, the reader's report, the run's settings), ``per_image.jsonl``, ``table.md``
(Table 2-shaped, with the delta to ``--baseline``), ``qualitative.png``, the validation-best
weights (``best/``) and the latest ``checkpoint-<step>``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import set_seed

from dpeval.extractors import load_extractor
from dpeval.tgif.evaluate import aggregate, load_rgb, predict, score_samples
from dpeval.tgif.finetune import FinetuneConfig, finetune
from dpeval.tgif.lite_baseline import MIT_B2, LiteBaseline, load_rgb_encoder
from dpeval.tgif.reader import GENERATORS, MASK_GROUPS, read_tgif
from dpeval.tgif.report import load_results, markdown_table, qualitative_figure, results_json
from dpgen.errors import InputError
from dpgen.options import option

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class TgifConfig(FinetuneConfig):
    """``dpeval tgif``: extractor, data, output, RGB encoder, report; fine-tuning settings."""

    extractor: str = option(help="DiffusionPrint folder / Hub id, noiseprint++:PATH, or random")
    data: str = option(help="TGIF root (SD2-fr, masks, ... with training/validation/testing)")
    output_dir: str = option("runs/tgif", help="results, best weights, checkpoints")
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
    seed: int = option(0, help="seeds Python, numpy and torch")
    json: bool = option(False, help="print results JSON instead of the markdown table")


def run_tgif(config: TgifConfig) -> tuple[dict | None, str]:
    """Fine-tune and evaluate; returns the results dict and the markdown table (main process;
    other processes get ``(None, "")``).

    Raises:
        InputError: when the training, validation or test split has no usable fake, or a
            ``--baseline`` is not a results file.
    """
    extractor, data, output_dir = config.extractor, config.data, config.output_dir
    baseline, figure_images, name, seed = (
        config.baseline, config.figure_images, config.name, config.seed
    )  # fmt: skip
    rgb_encoder, rgb_encoder_init = config.rgb_encoder, config.rgb_encoder_init
    out = Path(output_dir)
    base = load_results(baseline) if baseline else None  # fail before training, not after
    index = read_tgif(data)
    logger.info("%s", index.summary())
    for line in index.missing:
        logger.warning("left out: %s", line)
    for line in index.unmatched:
        logger.warning("unmatched: %s", line)
    semantic = MASK_GROUPS["semantic"]
    train, val, test = (
        index.select("training", semantic),
        index.select("validation", semantic),
        index.select("testing"),
    )
    for split, found in (("training", train), ("validation", val), ("testing", test)):
        if not found:
            raise InputError(
                f"{data}: no usable FR fake in the {split} split (see the reader's report above)"
            )

    accelerator = Accelerator()
    try:
        logger.info("%d process(es) on %s", accelerator.num_processes, accelerator.device)
        set_seed(seed)
        out.mkdir(parents=True, exist_ok=True)
        # huggingface_hub prints "Loading weights from local directory" on stdout, which
        # belongs to the results (--json)
        with contextlib.redirect_stdout(sys.stderr):
            frozen = load_extractor(extractor).model
        model = LiteBaseline(load_rgb_encoder(rgb_encoder, rgb_encoder_init), frozen)
        training = finetune(model, train, val, out, config, accelerator)
        results = None
        if accelerator.is_main_process:
            model.to(accelerator.device)
            rows = score_samples(model, test, accelerator.device)
            f1, counts = aggregate(rows)
            results = {
                "name": name or extractor,
                "framework": "lite-baseline",
                "extractor": extractor,
                "rgb_encoder": rgb_encoder,
                "rgb_encoder_init": rgb_encoder_init,
                "data": str(data),
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
            (out / "results.json").write_text(results_json(results))
            with open(out / "per_image.jsonl", "w") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in rows)
            table = markdown_table(results, base)
            (out / "table.md").write_text(table)
            if figure_images:
                shown = _spread(test, figure_images)
                maps = [predict(model, load_rgb(s.image), accelerator.device) for s in shown]
                qualitative_figure(
                    shown, maps, out / "qualitative.png", f"Lite Baseline + {results['name']}"
                )
            logger.info("results in %s", out)
        accelerator.wait_for_everyone()
    finally:
        accelerator.end_training()
    return results, (table if results is not None else "")


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
