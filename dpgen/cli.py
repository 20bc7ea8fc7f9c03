"""`dpgen`: argument parsing only. Each subcommand hands a config to its module."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from dpgen.masks import MASK_POLICIES


def _add_build_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build", help="inpaint sources and write the pairs / negatives / images datasets"
    )
    _add_source_args(p)
    p.add_argument(
        "--generated",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="folder or Hub dataset of NAME's generated images (Dragon layout); repeatable. "
        "Generators without one make theirs with their text-to-image pipeline",
    )
    p.add_argument(
        "--prompts", help="COCO captions JSON or a text file of prompts (default: bundled)"
    )
    p.add_argument(
        "--num-generated", type=int, help="generated images per generator (default: --num-images)"
    )
    p.add_argument("--mask-policy", choices=MASK_POLICIES, default="train")
    p.add_argument("--annotations", help="COCO instances JSON (for --mask-policy semantic)")
    p.set_defaults(func=_run_build, mode="inpaint")


def _add_roundtrip_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "roundtrip", help="encode-decode real images through each generator's VAE (same schema)"
    )
    _add_source_args(p)
    p.set_defaults(func=_run_build, mode="roundtrip")


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--generators",
        default="tiny-sd21,tiny-sdxl,tiny-flux",
        help="comma-separated manifest names or YAML paths (default: the tiny embedded ones)",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--real", help="folder or Hub dataset of real images (default: bundled photos)")
    p.add_argument("--num-images", type=int, help="cap on real images (default: all)")
    p.add_argument("--seed", type=int, default=0, help="fixes every random choice")
    p.add_argument("--patch-size", type=int, default=64)
    p.add_argument("--grid", default="4x4", help="ROWSxCOLS patch grid (default 4x4)")
    p.add_argument("--margin", type=int, default=8, help="px between outside patches and the mask")
    p.add_argument("--shard-size", type=int, default=4, help="images per shard (unit of resume)")


def _run_build(args: argparse.Namespace) -> int:
    from dpgen.build import BuildConfig, build

    rows, _, cols = args.grid.partition("x")
    if not (rows.isdigit() and cols.isdigit()):
        raise SystemExit(f"dpgen: --grid must look like 4x4, got {args.grid!r}")
    generated = {}
    for item in getattr(args, "generated", []):
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"dpgen: --generated must be NAME=PATH, got {item!r}")
        generated[name] = path
    cfg = BuildConfig(
        out=args.out,
        generators=[g.strip() for g in args.generators.split(",") if g.strip()],
        real=args.real,
        generated=generated,
        prompts=getattr(args, "prompts", None),
        num_images=args.num_images,
        num_generated=getattr(args, "num_generated", None),
        mask_policy=getattr(args, "mask_policy", "train"),
        annotations=getattr(args, "annotations", None),
        patch_size=args.patch_size,
        grid=(int(rows), int(cols)),
        margin=args.margin,
        seed=args.seed,
        shard_size=args.shard_size,
        mode=args.mode,
    )
    stats = build(cfg)
    logging.getLogger("dpgen").info(
        "done: %d images, %d skipped, %d patches in %.1f s on this process",
        stats.images, stats.skipped, stats.patches, stats.wall_seconds,
    )  # fmt: skip
    return 0


def _add_info_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="counts per split x category x generator")
    p.add_argument("dir", type=Path)
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from dpgen.info import build_counts, format_counts

    counts = build_counts(args.dir)
    print(json.dumps(counts, indent=1) if args.json else format_counts(counts))
    return 0


def _add_publish_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("publish", help="push a build with its dataset card to the Hub")
    p.add_argument("dir", type=Path)
    p.add_argument("--repo-id", required=True, help="ORG/NAME")
    p.add_argument("--private", action="store_true")
    p.add_argument("--license", default="other", help="licence id for the card (default: other)")
    p.set_defaults(func=_run_publish)


def _run_publish(args: argparse.Namespace) -> int:
    from dpgen.card import publish

    result = publish(args.dir, args.repo_id, private=args.private, license=args.license)
    print(result["url"])
    return 0


def _add_evalset_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evalset",
        help="build a linear-probe evaluation set (paper Sec. 4.1)",
        description="Labelled patches for `dpeval probe`: generated images (label generated), "
        "real images round-tripped through each generator's VAE (label real, latent-"
        "reconstructed) and untouched real images (label real, pristine). With no --generated, "
        "--reconstruct or --pristine, the bundled photographs are the real images (demo).",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory (new or empty)")
    p.add_argument(
        "--generators",
        default="",
        help="comma-separated manifest names or YAML paths: each makes --num-generated images "
        "with its text-to-image pipeline and reconstructs the --reconstruct images",
    )
    p.add_argument(
        "--generated",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="folder or Hub dataset of images generated by NAME; repeatable (e.g. 25 generators)",
    )
    p.add_argument("--reconstruct", help="real images for the latent-reconstructed kind")
    p.add_argument("--pristine", help="real images kept untouched")
    p.add_argument(
        "--num-generated", type=int, default=8, help="text-to-image images per generator (0: none)"
    )
    p.add_argument("--num-images", type=int, help="cap on images per listed location")
    p.add_argument("--prompts", help="COCO captions JSON or a text file (default: bundled)")
    p.add_argument("--patch-size", type=int, default=64)
    p.add_argument(
        "--image-size", type=int, default=512, help="longest side of images; text-to-image side"
    )
    p.add_argument("--max-per-source", type=int, help="patches per (kind, source) at most")
    p.add_argument("--batch-size", type=int, default=4, help="images per text-to-image call")
    p.add_argument("--seed", type=int, default=0, help="fixes every random choice")
    p.add_argument("--train-data", help="training build: refuse any image it contains")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.set_defaults(func=_run_evalset)


def _run_evalset(args: argparse.Namespace) -> int:
    import torch

    from dpgen.evalset import EvalsetConfig, build_evalset

    generated = {}
    for item in args.generated:
        name, sep, path = item.partition("=")
        if not (sep and name and path):
            raise SystemExit(f"dpgen: --generated must be NAME=PATH, got {item!r}")
        generated[name] = path
    cfg = EvalsetConfig(
        out=str(args.out),
        generators=[g.strip() for g in args.generators.split(",") if g.strip()],
        generated=generated,
        reconstruct=args.reconstruct,
        pristine=args.pristine,
        num_generated=args.num_generated,
        num_images=args.num_images,
        prompts=args.prompts,
        patch_size=args.patch_size,
        image_size=args.image_size,
        max_per_source=args.max_per_source,
        batch_size=args.batch_size,
        seed=args.seed,
        train_data=args.train_data,
        device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
    )
    counts = build_evalset(cfg)
    listing = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"wrote {sum(counts.values())} patches to {args.out}: {listing}")
    return 0


def _user_errors() -> tuple[type[BaseException], ...]:
    from dpgen.build import BuildError
    from dpgen.evalset import EvalsetError
    from dpgen.manifest import ManifestError
    from dpgen.masks import MaskError
    from dpgen.pipelines import FullRegenerationError
    from dpgen.sources import SourceError

    return (
        BuildError,
        EvalsetError,
        ManifestError,
        MaskError,
        SourceError,
        FullRegenerationError,
        FileNotFoundError,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dpgen", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_build_parser(sub)
    _add_roundtrip_parser(sub)
    _add_info_parser(sub)
    _add_publish_parser(sub)
    _add_evalset_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except _user_errors() as err:
        # Bad input: one clear line naming the file and the problem, no traceback.
        logging.getLogger("dpgen").error("%s", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
