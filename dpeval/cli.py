"""``dpeval``: the subcommands, their config classes and their thin run functions.

Each subcommand's flags are generated from its config dataclass (`dpgen.options`); a run
function here loads what the command needs, calls the module that does the work, and prints.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from dpgen.commands import Command, Tool
from dpgen.errors import InputError

logger = logging.getLogger("dpeval")


def run_probe(config) -> int:
    """``dpeval probe``: features of the frozen model, logistic regression, report."""
    import torch

    from dpeval import extractors, probe

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    extractors.check_spec(config.model)  # the model first: its card is read next
    is_folder = not config.model.startswith((extractors.NOISEPRINT_PREFIX, extractors.RANDOM_SPEC))
    if config.in_domain is None and is_folder:
        found = probe.read_training_generators(config.model)
        if found is None:
            why = (
                f"names no training generators in its model card ({probe.CARD_KEY})"
                if Path(config.model).is_dir()
                else "a Hub id, whose model card is not read"
            )
            raise InputError(
                f"{config.model}: {why}; pass --in-domain sd21,sdxl,flux (or the right list)"
            )
        config.in_domain = tuple(found)
    if config.update_card and not (is_folder and Path(config.model).is_dir()):
        raise InputError(f"{config.model}: --update-card needs --model to be a local folder")
    extractor = extractors.load_extractor(config.model, device)
    result = probe.run_probe(extractor, config)
    print(result.to_json() if config.json else result.to_markdown())
    if config.update_card:
        logger.info("updated %s", probe.update_card(config.model, result, config.data))
    return 0


def run_spectra(config) -> int:
    """``dpeval spectra``: mean radial spectra of the four patch types, PNG and CSV."""
    from dpeval import spectra

    png, table = spectra.write_spectra(spectra.compute_spectra(config), config.out)
    print(f"wrote {png} and {table}")
    return 0


def run_tgif(config) -> int:
    """``dpeval tgif``: fine-tune the fusion localizer on TGIF and report F1 (Table 2)."""
    from dpeval.tgif.report import results_json
    from dpeval.tgif.run import run_tgif as run

    results, table = run(config)
    if results is not None:  # main process only
        print(results_json(results) if config.json else table)
    return 0


def run_lightvae(config) -> int:
    """``dpeval lightvae``: train DiffIML's mask autoencoder and report its reconstruction F1."""
    from dpeval.tgif.decoders.lightvae_train import train_lightvae

    report = train_lightvae(config)
    print(
        f"LightVAE in {report.output_dir} after {report.steps} steps on {report.train_masks} "
        f"masks; reconstruction F1 at 0.5 on {report.eval_masks} masks: "
        f"{report.recon_f1_tgif:.4f} (TGIF, per image), {report.recon_f1_pooled:.4f} (pooled)"
    )
    return 0


def run_attribute_fit(config) -> int:
    """``dpeval attribute fit``: train the prototype head and fit the densities; report."""
    from dpeval.attribute import report, run

    result = run.fit(config)
    print(json.dumps(result, indent=1) if config.json else report.to_markdown(result))
    return 0


def run_attribute_score(config) -> int:
    """``dpeval attribute score``: per-patch and per-image scores of a saved attributor."""
    from dpeval.attribute import report, run

    result = run.score(config)
    print(json.dumps(result, indent=1) if config.json else report.to_markdown(result))
    return 0


def run_fingerprint(config) -> int:
    """``dpeval fingerprint``: train a fingerprint, or label IMAGES with one (``--detect``)."""
    if config.detect is not None:
        from dpeval.fingerprint.detect import detect

        failed = total = 0
        for record in detect(config.detect, config.images, config.batch_size, config.device):
            failed += "error" in record
            total += 1
            print(json.dumps(record), flush=True)
        if failed and failed == total:
            raise InputError(f"no input could be read: {failed} failed (see their error records)")
        if failed:
            logger.warning("%d image(s) could not be labelled (see their error records)", failed)
        return 0
    from dpeval.fingerprint.engine import train

    summary = train(config)
    print(
        f"wrote {summary['fingerprint']}: mu_real {summary['mu_real']:.5f}, "
        f"mu_fake {summary['mu_fake']:.5f}, {summary['seconds_per_epoch']:.2f} s/epoch"
    )
    return 0


def run_lineage(config) -> int:
    """``dpeval lineage``: cross-detection and fingerprint correlation matrices, dendrogram."""
    from dpeval.fingerprint.lineage import run_lineage as run

    print(run(config).to_markdown())
    return 0


def run_localize(config) -> int:
    """``dpeval localize``: a map, a mask and an overlay per image, and results.jsonl."""
    from dpeval.localize import localize

    print(localize(config).line())
    return 0


def run_score(config) -> int:
    """``dpeval score``: every F1 convention, IoU, MCC and AUC for a folder of maps."""
    from dpeval.score import run_score as score

    summary, table = score(config)
    print(json.dumps(summary, indent=1) if config.json else table)
    return 0


COMMANDS = {
    "probe": Command(
        config="dpeval.probe:ProbeConfig",
        run="dpeval.cli:run_probe",
        help="linear probe on frozen GAP features (paper Table 1)",
        description="Logistic regression (real vs generated) on standardised global-average-"
        "pooled backbone features of a dpgen evalset, stratified 70/30 split. Prints overall, "
        "in-domain and per-source accuracy and the confusion matrix. See docs/probe.md.",
    ),
    "spectra": Command(
        config="dpeval.spectra:SpectraConfig",
        run="dpeval.cli:run_spectra",
        help="radial power spectra of the four patch types (Fig. 3)",
        description="Mean radial power spectra of real source, real regenerated, generated "
        "source and generated inpainted patches of a dpgen build, per generator: a PNG figure "
        "(one panel per generator) and a CSV of the curves. See docs/probe.md.",
    ),
    "tgif": Command(
        config="dpeval.tgif.run:TgifConfig",
        run="dpeval.cli:run_tgif",
        help="fine-tune a fusion localizer on TGIF and report F1 (Table 2)",
        description="Fine-tune the Lite Baseline (SegFormer RGB + frozen extractor) on TGIF's "
        "FR semantic training split, with SegFormer's All-MLP decoder or DiffIML's diffusion "
        "decoder (--decoder), pick the checkpoint on validation, and report F1 at 0.5 per "
        "generator x mask type on the test split (mean ± std over --seeds runs); the "
        "validation-best model goes to OUTPUT/best as a Hub model. See docs/tgif.md and "
        "docs/diffiml.md.",
    ),
    "lightvae": Command(
        config="dpeval.tgif.decoders.lightvae_train:LightVAETrainConfig",
        run="dpeval.cli:run_lightvae",
        help="train DiffIML's mask autoencoder (LightVAE) for dpeval tgif --decoder diffiml",
        description="Train the LightVAE (stage 1 of DiffIML) on the crop masks of a TGIF "
        "split (or any folder of 0/255 masks) and their edge bands, with L1 reconstruction "
        "(optionally plus distillation towards an image VAE's latent); report its "
        "reconstruction F1 at 0.5, the upper bound of the diffusion decoder. Pass the folder "
        "to dpeval tgif --lightvae. See docs/diffiml.md.",
    ),
    "localize": Command(
        config="dpeval.localize:LocalizeConfig",
        run="dpeval.cli:run_localize",
        help="localization maps for any images with a trained localizer",
        description="For each image (files or folders): the probability map at full "
        "resolution (16-bit PNG), a binary mask at --threshold, a heat-map overlay and a line "
        "of results.jsonl; large images in seamless tiles; resumable. See docs/localize.md.",
    ),
    "score": Command(
        config="dpeval.score:ScoreConfig",
        run="dpeval.cli:run_score",
        help="F1 of a folder of maps under every published convention",
        description="Pairs maps with masks by file stem (or --pairs CSV) and reports, at 0.5 "
        "and at the best threshold, F1 under the TGIF, TruFor (original and TGIF's copy) and "
        "IMDL-BenCo (origin, reverse, double) conventions, IoU, MCC and pixel AUC. See "
        "docs/f1.md.",
    ),
    "attribute fit": Command(
        config="dpeval.attribute.run:FitConfig",
        run="dpeval.cli:run_attribute_fit",
        help="fit a prototype attributor (known generators + real) and its open-set densities",
        description="Embed a dpgen evalset (GAP or projector of a frozen DiffusionPrint, or a "
        "generator's latent signal-leak features), train a gated prototype head on the known "
        "classes, fit closed-set density scorers and the open-set KDE, and report closed-set "
        "metrics beside a linear probe and open-set metrics on held-out generators. "
        "See docs/attribute.md.",
    ),
    "attribute score": Command(
        config="dpeval.attribute.run:ScoreConfig",
        run="dpeval.cli:run_attribute_score",
        help="score patches with a fitted attributor: class probabilities and open-set scores",
        description="Per patch and per image class probabilities and open-set scores of a dpgen "
        "evalset under an attributor saved by 'attribute fit'; closed-set metrics on known "
        "classes and open-set metrics for --unseen generators. See docs/attribute.md.",
    ),
    "fingerprint": Command(
        config="dpeval.fingerprint.config:FingerprintConfig",
        run="dpeval.cli:run_fingerprint",
        help="train a Deep Image Fingerprint (Sinitsa & Fried) or detect with one",
        description="Train a fingerprint on --real and --fake images (a U-Net with a fixed "
        "random input whose output correlates with one class's residuals) and write it to "
        "--out; or, with --detect F IMAGES..., print one JSON line per image with its rho and "
        "label (nearest class centre). See docs/fingerprint.md.",
    ),
    "lineage": Command(
        config="dpeval.fingerprint.config:LineageConfig",
        run="dpeval.cli:run_lineage",
        help="model lineage from fingerprints: cross-detection, correlation, dendrogram",
        description="Score held-out images of each generator (--images NAME=DIR) and real "
        "images (--real) with every fingerprint (--fingerprints F1,F2,...), correlate the "
        "fingerprints, cluster them (SciPy, average linkage on 1 - NCC); CSV, JSON and PNG "
        "in --out. See docs/fingerprint.md.",
    ),
}

TOOL = Tool(
    "dpeval",
    "Evaluate DiffusionPrint extractors: probes, spectra, localization, attribution.",
    COMMANDS,
    groups={"attribute": "which generator made a patch, and is it one never seen (Proto-LeakNet)"},
)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``dpeval``."""
    return TOOL.main(argv)


if __name__ == "__main__":
    sys.exit(main())
