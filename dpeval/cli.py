"""`dpeval`: argument parsing only. Each subcommand hands its arguments to its module."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _add_probe_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="linear probe on frozen GAP features (paper Table 1)",
        description="Logistic regression (real vs generated) on standardised global-average-"
        "pooled backbone features of a dpgen evalset, stratified 70/30 split. Prints overall, "
        "in-domain and per-source accuracy and the confusion matrix. See docs/probe.md.",
    )
    p.add_argument(
        "--model",
        required=True,
        help="DiffusionPrint folder or Hub id, noiseprint++:PATH, or random[:SEED]",
    )
    p.add_argument("--data", required=True, help="folder written by dpgen evalset")
    p.add_argument(
        "--in-domain",
        help="comma-separated generators the model was trained on (default: the "
        "training_generators of the model card; required for a model card without them)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON, not tables")
    p.add_argument(
        "--update-card",
        action="store_true",
        help="write the result into the 'Linear probe' section of the model folder's README.md",
    )
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--batch-size", type=int, default=512, help="patches per forward pass")
    p.add_argument("--test-fraction", type=float, default=0.3, help="held-out share per source")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength (scikit-learn's C)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split")
    p.set_defaults(func=_run_probe)


def _run_probe(args: argparse.Namespace) -> int:
    import torch

    from dpeval import extractors, probe

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    is_folder = not args.model.startswith((extractors.NOISEPRINT_PREFIX, extractors.RANDOM_SPEC))
    if args.in_domain is not None:
        in_domain = [g.strip() for g in args.in_domain.split(",") if g.strip()]
    elif is_folder:
        in_domain = probe.read_training_generators(args.model)
        if in_domain is None:
            raise SystemExit(
                f"dpeval probe: {args.model} names no training generators in its model card "
                f"({probe.CARD_KEY}); pass --in-domain sd21,sdxl,flux (or the right list)"
            )
    else:
        in_domain = None  # baselines: no training domain unless told
    if args.update_card and not (is_folder and Path(args.model).is_dir()):
        raise SystemExit("dpeval probe: --update-card needs --model to be a local folder")
    config = probe.ProbeConfig(
        test_fraction=args.test_fraction, seed=args.seed, C=args.C, batch_size=args.batch_size
    )
    try:
        extractor = extractors.load_extractor(args.model, device)
        result = probe.run_probe(extractor, args.data, in_domain, config)
    except ValueError as err:
        raise SystemExit(f"dpeval probe: {err}") from None
    print(result.to_json() if args.json else result.to_markdown())
    if args.update_card:
        logging.getLogger(__name__).info(
            "updated %s", probe.update_card(args.model, result, args.data)
        )
    return 0


def _add_spectra_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "spectra",
        help="radial power spectra of the four patch types (Fig. 3)",
        description="Mean radial power spectra of real source, real regenerated, generated "
        "source and generated inpainted patches of a dpgen build, per generator: a PNG figure "
        "(one panel per generator) and a CSV of the curves. See docs/probe.md.",
    )
    p.add_argument("--data", required=True, help="folder written by dpgen build")
    p.add_argument("--out", required=True, help="folder for spectra.png and spectra.csv")
    p.add_argument(
        "--band",
        type=float,
        nargs=2,
        default=(0.2, 0.5),
        metavar=("LO", "HI"),
        help="normalised radial frequency band (0.5 = Nyquist)",
    )
    p.add_argument("--bins", type=int, default=12, help="annuli in the band")
    p.add_argument("--max-patches", type=int, default=4000, help="per generator and patch type")
    p.add_argument("--seed", type=int, default=0, help="seed of the patch sampling")
    p.set_defaults(func=_run_spectra)


def _run_spectra(args: argparse.Namespace) -> int:
    from dpeval import spectra

    try:
        config = spectra.SpectraConfig(
            band=tuple(args.band), bins=args.bins, max_patches=args.max_patches, seed=args.seed
        )
        curves = spectra.compute_spectra(args.data, config)
    except ValueError as err:
        raise SystemExit(f"dpeval spectra: {err}") from None
    png, table = spectra.write_spectra(curves, args.out)
    print(f"wrote {png} and {table}")
    return 0


def _add_tgif_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tgif",
        help="fine-tune a fusion localizer on TGIF and report F1 (Table 2)",
        description="Fine-tune the Lite Baseline (SegFormer RGB + frozen extractor) on TGIF's FR "
        "semantic training split, pick the checkpoint on validation, and report F1 at 0.5 per "
        "generator x mask type on the test split (TGIF and TruFor conventions). See docs/tgif.md.",
    )
    p.add_argument(
        "--extractor",
        required=True,
        help="DiffusionPrint folder / Hub id, noiseprint++:PATH, or random",
    )
    p.add_argument(
        "--data",
        required=True,
        help="TGIF root (SD2-fr, masks, ... with training/validation/testing)",
    )
    p.add_argument("--output-dir", default="runs/tgif", help="results, best weights, checkpoints")
    p.add_argument(
        "--rgb-encoder", default="nvidia/mit-b2", help="SegFormer MiT id or local folder"
    )
    p.add_argument(
        "--rgb-encoder-init",
        choices=("imagenet", "random"),
        default="imagenet",
        help="imagenet: pretrained weights (fails if unreachable); random: no pretraining",
    )
    p.add_argument("--crop-size", type=int, default=512, help="training crop side")
    p.add_argument("--batch-size", type=int, default=9, help="crops per forward pass and process")
    p.add_argument("--effective-batch", type=int, default=18, help="crops per optimizer step")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.0005)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument(
        "--resume-from-checkpoint", default="", help="checkpoint-<step> folder or 'latest'"
    )
    p.add_argument(
        "--baseline", default=None, help="results.json of another run: adds its row and the delta"
    )
    p.add_argument(
        "--figure-images", type=int, default=8, help="test images in qualitative.png (0: none)"
    )
    p.add_argument(
        "--name", default=None, help="row label of this run (default: the extractor spec)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--json", action="store_true", help="print results JSON instead of the markdown table"
    )
    p.set_defaults(func=_run_tgif)


def _run_tgif(args: argparse.Namespace) -> int:
    from dpeval.tgif.finetune import FinetuneConfig
    from dpeval.tgif.report import results_json
    from dpeval.tgif.run import run_tgif

    config = FinetuneConfig(
        crop_size=args.crop_size,
        batch_size=args.batch_size,
        effective_batch=args.effective_batch,
        epochs=args.epochs,
        max_steps=args.max_steps,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        num_workers=args.num_workers,
        resume_from_checkpoint=args.resume_from_checkpoint,
    )
    results, table = run_tgif(
        extractor=args.extractor,
        data=args.data,
        output_dir=args.output_dir,
        config=config,
        rgb_encoder=args.rgb_encoder,
        rgb_encoder_init=args.rgb_encoder_init,
        baseline=args.baseline,
        figure_images=args.figure_images,
        name=args.name,
        seed=args.seed,
    )
    if results is not None:  # main process only
        print(results_json(results) if args.json else table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dpeval", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_probe_parser(sub)
    _add_spectra_parser(sub)
    _add_tgif_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
