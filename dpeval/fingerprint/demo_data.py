"""Image sets for fingerprint demos and tests, from the tiny generators and bundled photos.

- Real images: non-overlapping ``size`` x ``size`` tiles of the bundled photographs
  (`dpgen.sources.bundled_photos_dir`) on a centred grid, without resampling; near-flat tiles
  (grey-level std below ``MIN_STD``, e.g. black sky) are left out. Tiles are split into train
  and test sets at random (seeded).
- Generated images: every tile round-tripped through a generator's VAE
  (`dpgen.pipelines.Generator.roundtrip`): the decoder paints every pixel, so each image carries
  the generator's decoder fingerprint, with the content of a real tile.
- A derived generator (`derive_generator`): a copy of a generator whose VAE decoder weights are
  each scaled by (1 + ``scale`` * N(0, 1)), a stand-in for a fine-tune, saved with
  ``save_pretrained`` and named by a manifest YAML that `dpgen.manifest.resolve_generators`
  accepts.

`make_demo` writes all of it (``scripts/fingerprint_demo_data.py`` is its command line)::

    OUT/real/{train,test}/*.png
    OUT/<generator>/{train,test}/*.png        one folder per generator, derived ones included
    OUT/generators/<parent>-derived.yaml      + its pipeline folders
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import diffusers
import numpy as np
import torch
import yaml
from PIL import Image

from dpgen.manifest import resolve_generators
from dpgen.pipelines import Generator, resolve_checkpoint
from dpgen.sources import bundled_photos_dir, list_images, load_image

logger = logging.getLogger(__name__)

MIN_STD = 8.0
TRAIN, TEST = "train", "test"
DERIVED_SUFFIX = "-derived"
ROUNDTRIP_BATCH = 16


def photo_tiles(size: int, photos: str | Path | None = None) -> list[tuple[str, Image.Image]]:
    """``(id, tile)`` for every non-flat ``size`` x ``size`` tile of the photos, ids
    ``<photo>_r<row>c<col>``, in listing order."""
    tiles = []
    for ref in list_images(str(photos or bundled_photos_dir()), "real"):
        image, (width, height) = load_image(ref)
        left, top = (width % size) // 2, (height % size) // 2
        for row in range(height // size):
            for col in range(width // size):
                x, y = left + col * size, top + row * size
                tile = image.crop((x, y, x + size, y + size))
                if np.asarray(tile.convert("L"), dtype=np.float64).std() >= MIN_STD:
                    tiles.append((f"{ref.image_id}_r{row}c{col}", tile))
    return tiles


def split(tiles: list, test_fraction: float, seed: int) -> dict[str, list]:
    """{"train": ..., "test": ...}: a seeded random ``test_fraction`` of the tiles is test."""
    order = np.random.default_rng(seed).permutation(len(tiles))
    n_test = int(round(test_fraction * len(tiles)))
    test = set(order[:n_test].tolist())
    return {
        TRAIN: [t for i, t in enumerate(tiles) if i not in test],
        TEST: [t for i, t in enumerate(tiles) if i in test],
    }


def write_images(images: Sequence[tuple[str, Image.Image]], folder: Path) -> Path:
    """Save ``(id, image)`` pairs as ``folder/<id>.png`` (lossless)."""
    folder.mkdir(parents=True, exist_ok=True)
    for image_id, image in images:
        image.save(folder / f"{image_id}.png")
    return folder


def roundtrips(generator: str, images: Sequence[tuple[str, Image.Image]], device: str = "cpu"):
    """The images round-tripped through ``generator``'s VAE (a manifest name or YAML path)."""
    gen = Generator(resolve_generators(generator)[0], device)
    out = []
    for start in range(0, len(images), ROUNDTRIP_BATCH):
        chunk = images[start : start + ROUNDTRIP_BATCH]
        decoded = gen.roundtrip([image for _, image in chunk])
        out += [(image_id, d) for (image_id, _), d in zip(chunk, decoded, strict=True)]
    gen.unload()
    return out


@torch.no_grad()
def perturb_decoder(vae: torch.nn.Module, scale: float, seed: int) -> None:
    """Scale each weight of ``vae.decoder`` by (1 + scale * N(0, 1)), drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    for param in vae.decoder.parameters():
        noise = torch.randn(param.shape, generator=generator).to(param)
        param.mul_(1.0 + scale * noise)


def derive_generator(parent: str, out: Path, scale: float = 0.05, seed: int = 0) -> Path:
    """A copy of generator ``parent`` with a perturbed VAE decoder; returns its manifest YAML.

    Every pipeline of the parent's manifest is loaded, its decoder perturbed with the same draw
    (`perturb_decoder`; the tiny text-to-image and inpainting pipelines share one VAE, so they
    stay twins), saved with ``save_pretrained`` under ``out/<name>/<role>``, and the manifest
    ``out/<name>.yaml`` (name ``<parent>-derived``, the parent's other settings) points at them.
    """
    spec = resolve_generators(parent)[0]
    name = spec.name + DERIVED_SUFFIX
    data = spec.to_dict()
    data.update(name=name, description=f"{spec.name} with its VAE decoder perturbed ({scale})")
    for role in ("inpaint", "text2image"):
        ref = getattr(spec, role)
        if ref is None:
            continue
        pipe = getattr(diffusers, ref.pipeline).from_pretrained(resolve_checkpoint(ref.checkpoint))
        perturb_decoder(pipe.vae, scale, seed)
        folder = (out / name / role).resolve()
        pipe.save_pretrained(folder)
        data[role] = {"checkpoint": str(folder), "pipeline": ref.pipeline}
    data["steps"], data["guidance"] = list(spec.steps), list(spec.guidance)
    manifest = out / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    return manifest


def make_demo(
    out: str | Path,
    generators: Sequence[str] = ("tiny-sd21", "tiny-sdxl", "tiny-flux"),
    derived: Sequence[str] = ("tiny-sd21",),
    size: int = 64,
    test_fraction: float = 0.4,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Path]:
    """Write the demo image sets (module docstring); returns {set name: its folder}.

    Args:
        generators: manifest names (or YAML paths) whose VAEs make generated images.
        derived: generators of which a derived copy is made too (named ``<name>-derived``).
        size: tile side in pixels.
        test_fraction: share of the tiles held out for testing.
    """
    out = Path(out)
    parts = split(photo_tiles(size), test_fraction, seed)
    folders = {"real": out / "real"}
    for part, tiles in parts.items():
        write_images(tiles, out / "real" / part)
    manifests = [str(derive_generator(p, out / "generators", seed=seed)) for p in derived]
    for generator in [*generators, *manifests]:
        name = resolve_generators(generator)[0].name
        for part, tiles in parts.items():
            write_images(roundtrips(generator, tiles, device), out / name / part)
        folders[name] = out / name
    logger.info("demo data in %s: %s", out, {k: len(v) for k, v in parts.items()})
    return folders
