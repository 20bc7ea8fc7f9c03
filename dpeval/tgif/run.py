"""`dpeval tgif` end to end: read TGIF, fine-tune the Lite Baseline, score the test split, report.

Writes into the output folder: ``results.json`` (F1 per convention x generator x mask type,
image counts, the reader's report, the run's settings; written last, so it marks a complete
run), ``per_image.jsonl``, ``table.md`` (Table 2-shaped, with the delta to ``--baseline``),
``qualitative.png``, ``metrics.jsonl`` (loss and validation F1 per step), the validation-best
localizer as a Hub model (``best/``: config.json, model.safetensors, README.md with the F1
tables, training_curves.png) and the latest complete ``checkpoint-<step>``.

``--decoder diffiml`` swaps SegFormer's All-MLP head for DiffIML's diffusion decoder. Its
LightVAE comes from ``--lightvae`` or is trained first into ``OUTPUT/lightvae``
(`dpeval.tgif.decoders.lightvae_train`; reused when complete, resumed when not), then frozen
inside the decoder. ``--seeds N`` makes N such runs in ``OUTPUT/seed-<s>`` and reports mean ±
std (`dpeval.tgif.seeds`); they share one LightVAE.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from dpeval.extractors import check_spec, load_extractor
from dpeval.tgif import card
from dpeval.tgif.decoders.lightvae import LightVAE
from dpeval.tgif.decoders.lightvae_train import (
    RECONSTRUCTION_FILE,
    LightVAETrainConfig,
    train_lightvae,
)
from dpeval.tgif.evaluate import (
    aggregate,
    image_generator,
    load_mask,
    load_rgb,
    predict,
    score_samples,
)
from dpeval.tgif.finetune import (
    CURVE_PANELS,
    CURVES_FILE,
    FinetuneConfig,
    finetune,
)
from dpeval.tgif.lite_baseline import MIT_B2, LiteBaseline, load_rgb_encoder
from dpeval.tgif.reader import GENERATORS, MASK_GROUPS, TGIFIndex, TGIFSample, read_tgif
from dpeval.tgif.report import load_results, markdown_table, qualitative_figure, results_json
from dpeval.tgif.seeds import combine, seed_configs
from dpgen.checkpoints import atomic_write, resolve_run
from dpgen.errors import InputError
from dpgen.options import OptionError, option
from dptrain.curves import plot_curves
from dptrain.tracker import METRICS_FILE, log_with, tracker_config

logger = logging.getLogger(__name__)

BEST_DIR = "best"
RESULTS_FILE = "results.json"
LIGHTVAE_DIR = "lightvae"
DECODERS = ("mlp", "diffiml")
#: DiffIML's settings (paper values): the defaults of the diffiml-only options.
DIFFIML_DEFAULTS = {
    "inference_steps": 8,
    "ensemble": 5,
    "flip_tta": True,
    "prior_rate": 0.1,
    "edge_weight": 0.8,
}
#: Options that only a diffiml run takes (refused with ``--decoder mlp``).
DIFFIML_ONLY = ("lightvae", *DIFFIML_DEFAULTS)


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
    seeds: int = option(
        1,
        help="independent runs with seeds --seed .. --seed + N - 1, each in OUTPUT/seed-<s>; "
        "the table gives mean ± std over them",
    )
    decoder: str = option(
        "mlp",
        help="head over the fused maps: mlp (SegFormer's All-MLP, the paper's) or diffiml "
        "(DiffIML's diffusion decoder over mask latents)",
        choices=DECODERS,
    )
    lightvae: str | None = option(
        None,
        help="diffiml: a trained LightVAE (folder or Hub id, from dpeval lightvae); default: "
        "train one into OUTPUT/lightvae first (reused when complete)",
    )
    inference_steps: int | None = option(None, help="diffiml: DDIM steps at inference (default 8)")
    ensemble: int | None = option(
        None, help="diffiml: noise draws averaged in latent space per image (default 5)"
    )
    flip_tta: bool | None = option(
        None, help="diffiml: horizontal-flip test-time augmentation, fused by max (default on)"
    )
    prior_rate: float | None = option(
        None, help="diffiml: std of the error-prior noise added to the clean latent (default 0.1)"
    )
    edge_weight: float | None = option(
        None,
        help="diffiml: weight of the edge-latent MSE, the mask latent's is 1 - it (default 0.8)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        given = [name for name in DIFFIML_ONLY if getattr(self, name) is not None]
        if self.decoder != "diffiml" and given:
            raise OptionError(
                f"{self.flag(given[0])}: only for --decoder diffiml (this run's decoder is "
                f"{self.decoder})"
            )
        if self.decoder == "diffiml":
            for name, value in DIFFIML_DEFAULTS.items():
                if getattr(self, name) is None:
                    setattr(self, name, value)
            self._check_diffiml()
        if self.seeds < 1:
            raise OptionError(f"--seeds: {self.seeds} is not a positive number of runs")
        if self.seeds > 1 and self.push_to_hub:
            raise OptionError("--push-to-hub: uploads one model; a run of --seeds > 1 has several")
        if self.seeds > 1 and self.resume_from_checkpoint not in ("", "latest"):
            raise OptionError(
                "--resume-from-checkpoint: with --seeds > 1 only 'latest' (each seed's folder)"
            )

    def _check_diffiml(self) -> None:
        if self.crop_size % 8:
            raise OptionError(
                f"--crop-size: {self.crop_size} is not a multiple of 8 (DiffIML's LightVAE grid)"
            )
        if self.inference_steps < 1 or self.ensemble < 1:
            raise OptionError(
                f"--inference-steps ({self.inference_steps}) and --ensemble ({self.ensemble}) "
                "must be >= 1"
            )
        if self.prior_rate < 0 or not 0 <= self.edge_weight <= 1:
            raise OptionError(
                f"--prior-rate ({self.prior_rate}) must be >= 0 and --edge-weight "
                f"({self.edge_weight}) in [0, 1]"
            )

    def decoder_config(self) -> dict:
        """The decoder's init arguments this run sets (`DiffIMLDecoder`'s; none for mlp)."""
        if self.decoder != "diffiml":
            return {}
        return {
            "num_inference_steps": self.inference_steps,
            "ensemble": self.ensemble,
            "flip_tta": self.flip_tta,
            "prior_rate": self.prior_rate,
            "edge_weight": self.edge_weight,
        }


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
    """Fine-tune and evaluate (once, or once per seed); returns the results dict and the
    markdown table (main process; other processes get ``(None, "")``).

    Raises:
        InputError: a bad input (`check_inputs`, `build_model`), before any fine-tuning.
    """
    if config.seeds > 1:
        return run_seeds(config)
    return run_one(config, check_inputs(config))


def run_one(config: TgifConfig, inputs: TgifInputs) -> tuple[dict | None, str]:
    """One fine-tuning and evaluation into ``--output-dir`` (see `run_tgif`)."""
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
            atomic_write(out / RESULTS_FILE, results_json(results))  # last: the run is complete
        accelerator.wait_for_everyone()
    finally:
        accelerator.end_training()
    return results, table


def run_seeds(config: TgifConfig) -> tuple[dict | None, str]:
    """``--seeds N``: `run_one` per seed in ``OUTPUT/seed-<s>``, then mean ± std.

    Every seed's output folder is checked before anything runs. With
    ``--resume-from-checkpoint latest`` a seed whose ``results.json`` exists is complete and
    not run again; the others resume from their newest checkpoint. The seeds share one
    LightVAE (``--lightvae``, or ``OUTPUT/lightvae`` trained once with ``--seed``).
    """
    subs = seed_configs(config)
    resumes = [check_output(sub) for sub in subs]
    inputs = check_inputs(config, output=False)
    if config.decoder == "diffiml" and not config.lightvae:
        with _rng_untouched():
            folder = prepare_lightvae(config)
        subs = [dataclasses.replace(sub, lightvae=str(folder)) for sub in subs]
    runs = []
    for sub, resume in zip(subs, resumes, strict=True):
        done = Path(sub.output_dir) / RESULTS_FILE
        if config.resume_from_checkpoint and done.is_file():
            logger.info("seed %d: complete in %s (results reused)", sub.seed, sub.output_dir)
            runs.append(load_results(done))
            continue
        logger.info("seed %d of %s: %s", sub.seed, config.output_dir, sub.output_dir)
        sub_inputs = dataclasses.replace(inputs, baseline=None, resume=resume)
        runs.append(run_one(sub, sub_inputs)[0])
    if int(os.environ.get("RANK", "0")) != 0:  # the launcher's rank: only the main one reports
        return None, ""
    results = combine(runs, [sub.seed for sub in subs], _run_fields(config, inputs.index))
    out = Path(config.output_dir)
    table = markdown_table(results, inputs.baseline)
    (out / "table.md").write_text(table)
    atomic_write(out / RESULTS_FILE, results_json(results))
    logger.info("mean ± std over %d seeds in %s", config.seeds, out)
    return results, table


def check_output(config: TgifConfig) -> Path | None:
    """The checkpoint to resume from in ``--output-dir`` (None: start afresh).

    Raises:
        InputError: ``--output-dir`` is a file, or holds an earlier run's checkpoints without
            ``--resume-from-checkpoint``; a bad ``--resume-from-checkpoint``.
    """
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: --output-dir exists and is not a folder")
    resume = resolve_run(config.resume_from_checkpoint, out)
    if config.resume_from_checkpoint and resume is None:
        logger.info("no checkpoint in %s; starting a new run", out)
    return resume


def check_inputs(config: TgifConfig, output: bool = True) -> TgifInputs:
    """Read and check every input named by ``config`` before any model is loaded.

    The cheap checks come first (``--extractor``, ``--rgb-encoder`` given as a path,
    ``--baseline``, ``--output-dir``, ``--hub-model-id``, ``--lightvae``), then the dataset and
    every mask it uses; the models themselves are loaded by `build_model`.

    Args:
        output: check ``--output-dir`` too (`check_output`); `run_seeds` checks each seed's.

    Raises:
        InputError: a bad ``--extractor`` (`dpeval.extractors.check_spec`), ``--rgb-encoder``
            or ``--lightvae`` (a path that is not a folder with a config.json),
            ``--baseline``, ``--resume-from-checkpoint``, ``--hub-model-id`` or
            ``--output-dir`` (`check_output`), a split without a usable fake, or a mask that
            is not 0/255.
        FileNotFoundError: ``--data`` is not a folder.
    """
    check_spec(config.extractor)
    _check_local(config.rgb_encoder, "--rgb-encoder")
    baseline = load_results(config.baseline) if config.baseline else None
    resume = check_output(config) if output else None
    if config.push_to_hub:
        card.check_repo_id(config.hub_model_id or Path(config.output_dir).resolve().name)
    if config.lightvae:
        _check_local(config.lightvae, "--lightvae")
    index = read_tgif(config.data)
    _log_index(index)
    train, val, test = _splits(index, config.data)
    check_masks([*train, *val, *test])
    return TgifInputs(index, train, val, test, baseline, resume)


def _check_local(spec: str, flag: str) -> None:
    """A spec written as a path (``/``, ``.``, ``~``) must be a folder with a config.json."""
    path = Path(spec).expanduser()
    if spec.startswith(("/", ".", "~")) and not (path / "config.json").is_file():
        raise InputError(f"{spec}: {flag} is not a folder with a config.json")


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
    """The Lite Baseline around the frozen extractor, initialised from ``--seed``; with
    ``--decoder diffiml`` its decoder holds the LightVAE (`prepare_lightvae`).

    The LightVAE's training or loading leaves torch's, NumPy's and Python's global generators
    as they were, so the localizer starts from the same weights (and a killed run restarts the
    same way) whether the LightVAE was trained in this run or reused.

    Raises:
        InputError: an extractor, RGB encoder or LightVAE that cannot be loaded (the first
            two before the LightVAE is trained).
    """
    set_seed(config.seed)  # the same initialisation on every process and every resume
    frozen = load_extractor(config.extractor).model
    rgb = load_rgb_encoder(config.rgb_encoder, config.rgb_encoder_init)
    if config.decoder == "mlp":
        return LiteBaseline.from_parts(rgb, frozen)
    with _rng_untouched():
        vae = load_lightvae(prepare_lightvae(config))
    return LiteBaseline.from_parts(rgb, frozen, config.decoder, config.decoder_config(), vae)


@contextlib.contextmanager
def _rng_untouched() -> Iterator[None]:
    """Restore torch's (CPU and CUDA), NumPy's and Python's global generators on exit."""
    state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        yield
    random.setstate(state[0])
    np.random.set_state(state[1])


def prepare_lightvae(config: TgifConfig) -> str:
    """The LightVAE of a diffiml run: ``--lightvae``, else ``OUTPUT/lightvae``, trained there
    first (`train_lightvae`: DiffIML's defaults, masks of the training split resized to
    ``--crop-size``, ``--seed``) unless a complete one (with its ``reconstruction.json``) is
    there already; an interrupted one resumes from its newest checkpoint."""
    if config.lightvae:
        return config.lightvae
    folder = Path(config.output_dir) / LIGHTVAE_DIR
    if (folder / RECONSTRUCTION_FILE).is_file():
        logger.info("LightVAE: reusing the one trained in %s", folder)
        return str(folder)
    logger.info("LightVAE: training it first into %s (stage 1 of DiffIML)", folder)
    vae_config = LightVAETrainConfig(
        data=config.data,
        output_dir=str(folder),
        image_size=config.crop_size,
        seed=config.seed,
        num_workers=config.num_workers,
        report_to=config.report_to,
        resume_from_checkpoint="latest",
    )
    train_lightvae(vae_config)
    return str(folder)


def load_lightvae(spec: str) -> LightVAE:
    """A trained LightVAE from a folder or Hub id.

    Raises:
        InputError: naming ``spec``, when it cannot be loaded.
    """
    try:
        return LightVAE.from_pretrained(spec, strict=True)
    except Exception as err:  # missing files, offline Hub, wrong keys: one clear line
        reason = " ".join(str(err).split())
        raise InputError(f"{spec}: cannot load a LightVAE (--lightvae): {reason}") from None


def report(model, inputs: TgifInputs, training: dict, config: TgifConfig, device) -> tuple:
    """Score the test split (a diffusion decoder's maps seeded by (``--seed``, image)); write
    per_image.jsonl, table.md, qualitative.png (results.json is written by the caller, last).

    Returns:
        ``(results, table)``.
    """
    out = Path(config.output_dir)
    model.to(device)
    rows = score_samples(model, inputs.test, device, seed=config.seed)
    f1, counts = aggregate(rows)
    results = {
        **_run_fields(config, inputs.index),
        "f1": f1,
        "n_images": counts,
        "training": {**training, "config": config.to_dict()},
    }
    with open(out / "per_image.jsonl", "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    table = markdown_table(results, inputs.baseline)
    (out / "table.md").write_text(table)
    if config.figure_images:
        shown = _spread(inputs.test, config.figure_images)
        maps = [
            predict(model, load_rgb(s.image), device, image_generator(config.seed, i))
            for s, i in shown
        ]
        title = f"Lite Baseline ({config.decoder} decoder) + {results['name']}"
        qualitative_figure([s for s, _ in shown], maps, out / "qualitative.png", title)
    logger.info("results in %s", out)
    return results, table


def _run_fields(config: TgifConfig, index: TGIFIndex) -> dict:
    """What names a run in its results: model, decoder, data, the reader's report."""
    return {
        "name": config.name or config.extractor,
        "framework": "lite-baseline",
        "decoder": config.decoder,
        "decoder_config": config.decoder_config(),
        "extractor": config.extractor,
        "rgb_encoder": config.rgb_encoder,
        "rgb_encoder_init": config.rgb_encoder_init,
        "data": str(config.data),
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


def _spread(samples: list, n: int) -> list[tuple[TGIFSample, int]]:
    """Up to ``n`` samples taken in turn from each generator x mask type, for the figure, with
    their index in ``samples`` (which seeds a diffusion decoder's map as in the scoring)."""
    groups: dict = {}
    for i, s in enumerate(samples):
        groups.setdefault((s.generator, s.mask_type), []).append((s, i))
    order = sorted(groups, key=lambda k: (list(GENERATORS).index(k[0]), k[1]))
    picked: list = []
    while len(picked) < n and any(groups[k] for k in order):
        for k in order:
            if groups[k] and len(picked) < n:
                picked.append(groups[k].pop(0))
    return picked
