"""Named settings of ``dpgen build`` (``--preset NAME``) and the counts they should give.

``paper`` is DiffusionPrint's training-data recipe (Sec. 3.1): 10,000 COCO val2017 real images,
10,000 Dragon images from each of SD 2.1, SDXL and FLUX.1 (``--generated-from`` a Dragon config,
each generator taking the samples its manifest's ``source_models`` name in ``model.txt``), a 4x4
grid of 64-px patches, and the training mask policy. The command still names the data:

    dpgen build --preset paper --real /data/coco/val2017 \\
        --generated-from lesc-unifi/dragon/ExtraLarge:train --out /data/dp-build

Flags and ``--config`` override a preset's values.
"""

from __future__ import annotations

BUILD_PRESETS: dict[str, dict] = {
    "paper": {
        "generators": ["sd21", "sdxl", "flux"],
        "num_images": 10_000,
        "num_generated": 10_000,
        "patch_size": 64,
        "grid": "4x4",
        "margin": 8,
        "mask_policy": "train",
    },
}

#: What ``dpgen info`` should print for a full-scale ``--preset paper`` build (paper Sec. 3.1):
#: 3 x 10,000 generated images x 16 inside positions x 2 views = 960,000 generated pairs;
#: 10,000 real images x up to 16 outside positions x 4 views, fewer where the grid shrinks =
#: 550,728 real views; 10,000 x 16 inside positions x 4 views = 640,000 hard negatives.
PAPER_COUNTS = {
    "generated_pairs": 960_000,
    "real_views": 550_728,
    "negatives": 640_000,
    "total": 2_150_728,
}


def matching_preset(config: dict) -> str | None:
    """The preset whose every setting a build's config (``provenance.json``) has, if any."""
    for name, settings in BUILD_PRESETS.items():
        wanted = dict(settings, grid=[int(v) for v in settings["grid"].split("x")])
        if all(config.get(k) == v for k, v in wanted.items()):
            return name
    return None
