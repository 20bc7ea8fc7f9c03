"""``dpgen``: the subcommands, their config classes and their thin run functions.

Each subcommand's flags are generated from its config dataclass (`dpgen.options`); a run
function here calls the module that does the work and prints its result.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

from dpgen.commands import Command, Tool

logger = logging.getLogger("dpgen")


def run_build(config) -> int:
    """``dpgen build`` and ``dpgen roundtrip``: this process's shards, then the finished folder."""
    from dpgen.build import build

    stats = build(config)
    logger.info(
        "done: %d images, %d skipped, %d patches in %.1f s on this process",
        stats.images, stats.skipped, stats.patches, stats.wall_seconds,
    )  # fmt: skip
    return 0


def run_info(config) -> int:
    """``dpgen info``: counts per split x category x generator."""
    from dpgen.info import build_counts, content_digest, format_counts

    counts = build_counts(config.dir)
    if config.digest:
        counts["digest"] = content_digest(config.dir)
    print(json.dumps(counts, indent=1) if config.json else format_counts(counts))
    return 0


def run_show(config) -> int:
    """``dpgen show``: the contact sheet PNG."""
    from dpgen.show import show

    print(show(config))
    return 0


def run_publish(config) -> int:
    """``dpgen publish``: card, then upload."""
    from dpgen.card import publish

    result = publish(config)
    print(result["url"])
    return 0


def run_evalset(config) -> int:
    """``dpgen evalset``: the linear probe's labelled patches."""
    from dpgen.evalset import build_evalset

    counts = build_evalset(config)
    listing = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"wrote {sum(counts.values())} patches to {config.out}: {listing}")
    return 0


def run_plan(config) -> int:
    """``dpgen plan``: parameters, resident bytes, peak and offload per generator."""
    from dpgen.plan import format_plan, make_plan

    plan = make_plan(config)
    print(json.dumps(plan.to_dict(), indent=1) if config.json else format_plan(plan))
    return 0


COMMANDS = {
    "build": Command(
        config="dpgen.build:BuildConfig",
        run="dpgen.cli:run_build",
        help="inpaint sources and write the pairs / negatives / images datasets",
        description="Inpaint real images with every generator and generated images with their "
        "own generator; cut aligned patch groups and the hard-negative pool (paper Sec. 3.1). "
        "Sharded and resumable; `accelerate launch -m dpgen build` splits shards across GPUs. "
        "--preset paper sets the paper's recipe (see dpgen.presets).",
        presets="dpgen.presets:BUILD_PRESETS",
    ),
    "roundtrip": Command(
        config="dpgen.build:RoundtripConfig",
        run="dpgen.cli:run_build",
        help="encode-decode real images through each generator's VAE (same schema)",
    ),
    "evalset": Command(
        config="dpgen.evalset:EvalsetConfig",
        run="dpgen.cli:run_evalset",
        help="build a linear-probe evaluation set (paper Sec. 4.1)",
        description="Labelled patches for `dpeval probe`: generated images (label generated), "
        "real images round-tripped through each generator's VAE (label real, latent-"
        "reconstructed) and untouched real images (label real, pristine). With no --generated, "
        "--reconstruct or --pristine, the bundled photographs are the real images (demo).",
    ),
    "info": Command(
        config="dpgen.info:InfoConfig",
        run="dpgen.cli:run_info",
        help="counts per split x category x generator, checked against the pairing formulas",
    ),
    "plan": Command(
        config="dpgen.plan:PlanConfig",
        run="dpgen.cli:run_plan",
        help="GPU memory per generator and the offload that fits, counted without weights",
        description="Count each generator's parameters from its checkpoints' published configs "
        "(no download, no allocation), its resident bytes at the manifest's dtype, the peak of "
        "the generator-major schedule, and the least CPU offload that fits --gpu-memory.",
    ),
    "show": Command(
        config="dpgen.show:ShowConfig",
        run="dpgen.cli:run_show",
        help="draw a contact sheet of a build's positive groups and hard negatives (PNG)",
        description="One row per positive group (a real image's source patch and its K "
        "regenerations outside the mask, or a generated image's patch and its inpainting), "
        "each patch labelled by view, generator and category, then a strip of hard negatives: "
        "what the model will learn from.",
    ),
    "publish": Command(
        config="dpgen.card:PublishConfig",
        run="dpgen.cli:run_publish",
        help="push a build with its dataset card to the Hub",
    ),
}

TOOL = Tool("dpgen", "Build DiffusionPrint's inpainting patch datasets.", COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``dpgen`` (also ``python -m dpgen``)."""
    return TOOL.main(argv)


if __name__ == "__main__":
    sys.exit(main())
