"""`dpeval tgif` end to end: read TGIF, fine-tune the Lite Baseline, score the test split, report.

Writes into the output folder: ``results.json`` (F1 per convention x generator x mask type,
image counts, the reader's report, the run's settings), ``per_image.jsonl``, ``table.md``
(Table 2-shaped, with the delta to ``--baseline``), ``qualitative.png``, the validation-best
weights (``best/``) and the latest ``checkpoint-<step>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import set_seed

from dpeval.extractors import load_extractor
from dpeval.tgif.evaluate import aggregate, load_rgb, predict, score_samples
from dpeval.tgif.finetune import FinetuneConfig, finetune
from dpeval.tgif.lite_baseline import LiteBaseline, load_rgb_encoder
from dpeval.tgif.reader import GENERATORS, MASK_GROUPS, read_tgif
from dpeval.tgif.report import load_results, markdown_table, qualitative_figure, results_json

logger = logging.getLogger(__name__)


def run_tgif(
    extractor: str,
    data: str | Path,
    output_dir: str | Path,
    config: FinetuneConfig,
    rgb_encoder: str,
    rgb_encoder_init: str,
    baseline: str | Path | None = None,
    figure_images: int = 8,
    name: str | None = None,
    seed: int = 0,
) -> tuple[dict, str]:
    """Fine-tune and evaluate; returns the results dict and the markdown table.

    Args:
        extractor: spec for `dpeval.extractors.load_extractor` (DiffusionPrint folder / Hub id,
            ``noiseprint++:PATH``, ``random``).
        data: TGIF root (see `dpeval.tgif.reader`).
        output_dir: where everything is written.
        config: fine-tuning settings.
        rgb_encoder: SegFormer MiT id or folder (``nvidia/mit-b2``).
        rgb_encoder_init: ``imagenet`` or ``random`` (see `load_rgb_encoder`).
        baseline: a previous run's ``results.json`` for the delta row.
        figure_images: test images in the qualitative figure (0: no figure).
        name: the run's row label (default: the extractor spec).
        seed: seeds accelerate's RNGs (Python, numpy, torch).

    Raises:
        ValueError: when the training, validation or test split has no usable fake.
    """
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
            raise ValueError(
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
                "training": {**training, "config": dataclasses.asdict(config), "seed": seed},
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
