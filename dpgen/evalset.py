"""`dpgen evalset`: the labelled patches of the linear probe (paper Sec. 4.1).

The paper probes frozen features on a set independent of the training images: 180,000 patches
of images from 25 generators (label generated), 90,000 of real images passed through a
generator's VAE (label real, "latent-reconstructed") and 90,000 of untouched real photographs
(label real, "pristine"). This module builds such a set from three kinds of sources:

- generated: folders of images made by named generators (``--generated NAME=DIR``, any number,
  e.g. Dragon's 25), and/or images the ``--generators`` make with their text-to-image pipelines;
- latent-reconstructed: real images round-tripped through each ``--generators`` VAE;
- pristine: real images as they are.

Every image is cut into non-overlapping ``P x P`` patches on a centred grid over the whole image
(`full_grid`; no mask is involved), each (kind, source) is capped at ``max_per_source`` patches drawn with
the seed, and the result is saved as a `datasets.DatasetDict` ``{"eval": ...}`` with
`dpgen.schema.eval_features`. With no source given at all, the bundled demo photographs are the
real images and the generators make the generated ones (the demo path).

Image ids follow ``dpgen build`` (``real/<id>``, ``generated/<name>/<id>``), so a training build
given as ``train_data`` is checked for shared images and the set is refused on any overlap.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets, load_from_disk
from PIL import Image

from dpgen import sources
from dpgen.grid import Cell, Grid, axis_starts, extract_patches
from dpgen.manifest import GeneratorSpec, common_multiple, resolve_generators
from dpgen.pipelines import Generator
from dpgen.schema import EVAL, IMAGES, PAIRS, SOURCE_GENERATED, SOURCE_REAL, eval_features

logger = logging.getLogger(__name__)

GENERATED, RECONSTRUCTED, PRISTINE = "generated", "latent-reconstructed", "pristine"
#: Written next to the dataset: the configuration and the patch counts per (kind, source).
INFO_FILE = "evalset.json"


class EvalsetError(ValueError):
    """The evaluation set cannot be built as asked; the message says why."""


@dataclass
class EvalsetConfig:
    """What goes into an evaluation set.

    Attributes:
        out: output folder (``save_to_disk`` layout).
        generators: manifest names; each makes ``num_generated`` text-to-image images and
            round-trips every ``reconstruct`` image through its VAE.
        generated: generator name -> folder (or dataset) of images it made.
        reconstruct: real images for the latent-reconstructed kind (None: see ``pristine``).
        pristine: real images kept as they are.
        num_generated: text-to-image images per generator in ``generators`` (0: none).
        num_images: at most this many images per listed location (None: all).
        prompts: prompt file for text-to-image (None: the bundled prompts).
        patch_size: side P of the patches.
        image_size: longest side real and folder images are resized down to; the side of
            text-to-image outputs (rounded down to the generator's size multiple).
        max_per_source: patches kept per (kind, source) at most (None: all).
        batch_size: images per pipeline call.
        seed: seeds the prompts, the pipelines' noise and the patch sampling.
        train_data: a dpgen training build whose image ids must not appear here.
        device: where the pipelines run.
    """

    out: str
    generators: list[str] = field(default_factory=list)
    generated: dict[str, str] = field(default_factory=dict)
    reconstruct: str | None = None
    pristine: str | None = None
    num_generated: int = 8
    num_images: int | None = None
    prompts: str | None = None
    patch_size: int = 64
    image_size: int = 512
    max_per_source: int | None = None
    batch_size: int = 4
    seed: int = 0
    train_data: str | None = None
    device: str = "cpu"

    @property
    def demo(self) -> bool:
        """No source given: the bundled photographs are both reconstructed and pristine."""
        return not (self.generated or self.reconstruct or self.pristine)

    def __post_init__(self) -> None:
        if self.patch_size < 8 or self.image_size < self.patch_size:
            raise EvalsetError(
                f"need 8 <= patch_size <= image_size, got {self.patch_size}, {self.image_size}"
            )
        if self.num_generated < 0 or (self.max_per_source is not None and self.max_per_source < 1):
            raise EvalsetError("num_generated must be >= 0 and max_per_source >= 1")
        clash = set(self.generated) & set(self.generators) if self.num_generated else set()
        if clash:
            raise EvalsetError(
                f"generator(s) {sorted(clash)} both make images and have a --generated folder; "
                "pass --num-generated 0 to use only the folders"
            )
        if self.reconstruct and not self.generators:
            raise EvalsetError("reconstruct images need --generators whose VAE reconstructs them")


@dataclass
class _Chunk:
    """Patches of one image, labelled."""

    image_id: str
    kind: str
    source: str
    patches: np.ndarray  # (N, 3, P, P) uint8
    boxes: list[tuple[int, int, int, int]]


def full_grid(width: int, height: int, patch: int) -> Grid:
    """Non-overlapping ``patch``-sized cells over the whole ``width x height`` image.

    ``height // patch`` rows and ``width // patch`` columns, each centred in an equal slot of
    its axis by `dpgen.grid.axis_starts` (the build's placement rule).
    """
    rows, cols = height // patch, width // patch
    ys, xs = axis_starts(0, height, rows, patch), axis_starts(0, width, cols, patch)
    cells = tuple(
        Cell(r, c, (int(x), int(y), int(x) + patch, int(y) + patch))
        for r, y in enumerate(ys)
        for c, x in enumerate(xs)
    )
    return Grid(rows, cols, patch, cells)


def _chunk(image: Image.Image, image_id: str, kind: str, source: str, patch: int) -> _Chunk:
    grid = full_grid(*image.size, patch)
    patches = extract_patches(np.asarray(image.convert("RGB")), grid)  # (N, 3, P, P)
    return _Chunk(image_id, kind, source, patches, [c.box for c in grid.cells])


def _prepared(refs: list[sources.SourceRef], config: EvalsetConfig, multiple: int):
    for ref in refs:
        image, _ = sources.load_image(ref)
        prepared = sources.prepare(image, multiple, config.image_size, config.patch_size, ref.path)
        yield ref, prepared.image


def _batched(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _generated_chunks(
    specs: list[GeneratorSpec],
    config: EvalsetConfig,
    refs: dict[str, list[sources.SourceRef]],
    rng: np.random.Generator,
) -> Iterator[_Chunk]:
    """Chunks of the generated kind: folders first, then text-to-image outputs."""
    for name in config.generated:
        for ref, image in _prepared(refs[name], config, 1):
            yield _chunk(
                image, f"generated/{name}/{ref.image_id}", GENERATED, name, config.patch_size
            )
    if not config.num_generated:
        return
    prompts = sources.load_prompts(config.prompts)
    for spec in specs:
        side = config.image_size - config.image_size % spec.size_multiple
        gen = Generator(spec, config.device)
        picks = rng.integers(0, len(prompts), config.num_generated).tolist()
        seeds = rng.integers(0, 2**31 - 1, config.num_generated).tolist()
        for batch in _batched(list(range(config.num_generated)), config.batch_size):
            steps = int(rng.integers(spec.steps[0], spec.steps[1] + 1))
            guidance = float(rng.uniform(*spec.guidance))
            images = gen.generate(
                [prompts[picks[i]] for i in batch],
                [seeds[i] for i in batch],
                steps,
                guidance,
                side,
                side,
            )
            for i, image in zip(batch, images, strict=True):
                image_id = f"generated/{spec.name}/eval-s{config.seed}-{i:05d}"
                yield _chunk(image, image_id, GENERATED, spec.name, config.patch_size)
        gen.unload()
        logger.info("%s: generated %d images", spec.name, config.num_generated)


def _real_chunks(
    specs: list[GeneratorSpec], config: EvalsetConfig, refs: dict[str, list[sources.SourceRef]]
) -> Iterator[_Chunk]:
    """Chunks of the latent-reconstructed and pristine kinds."""
    if refs[RECONSTRUCTED]:
        prepared = list(_prepared(refs[RECONSTRUCTED], config, common_multiple(specs)))
        for spec in specs:
            gen = Generator(spec, config.device)
            for ref, image in prepared:  # one image per call: sizes differ
                (out,) = gen.roundtrip([image])
                yield _chunk(
                    out, f"real/{ref.image_id}", RECONSTRUCTED, spec.name, config.patch_size
                )
            gen.unload()
            logger.info("%s: reconstructed %d real images", spec.name, len(prepared))
    for ref, image in _prepared(refs[PRISTINE], config, 1):
        yield _chunk(image, f"real/{ref.image_id}", PRISTINE, "real", config.patch_size)


def _list_sources(config: EvalsetConfig) -> dict[str, list[sources.SourceRef]]:
    """The listed real images per kind and the folder images per generator name."""

    def listed(location: str | None, source_set: str, name: str = "") -> list[sources.SourceRef]:
        return sources.list_images(location, source_set, name, config.num_images, config.seed)

    demo = config.demo  # None lists the bundled photographs
    refs = {
        RECONSTRUCTED: listed(config.reconstruct, SOURCE_REAL)
        if config.reconstruct or demo
        else [],
        PRISTINE: listed(config.pristine, SOURCE_REAL) if config.pristine or demo else [],
    }
    for name, location in config.generated.items():
        refs[name] = listed(location, SOURCE_GENERATED, name)
    return refs


def training_image_ids(path: str) -> set[str]:
    """Image ids of a dpgen training build (its ``images`` split, else its ``pairs``).

    Raises:
        EvalsetError: naming the folder when it is not a dpgen build.
    """
    try:
        build = load_from_disk(path)
    except (FileNotFoundError, ValueError) as err:
        raise EvalsetError(f"{path}: not a dpgen build: {err}") from None
    for split in (IMAGES, PAIRS):
        if split in build:
            return set(build[split].data.column("image_id").to_pylist())
    raise EvalsetError(f"{path}: no {IMAGES!r} or {PAIRS!r} split; not a dpgen build")


def _dataset(chunks: list[_Chunk], patch_size: int) -> Dataset:
    patches = np.concatenate([c.patches for c in chunks])
    rows = [(c, i) for c in chunks for i in range(len(c.boxes))]
    label = [0 if c.kind != GENERATED else 1 for c, _ in rows]
    return Dataset.from_dict(
        {
            "patch_id": [f"{c.kind}/{c.source}/{c.image_id}/r{i}" for c, i in rows],
            "image_id": [c.image_id for c, _ in rows],
            "label": label,
            "kind": [c.kind for c, _ in rows],
            "source": [c.source for c, _ in rows],
            "box": [list(c.boxes[i]) for c, i in rows],
            "patch": patches,
        },
        features=eval_features(patch_size),
    )


def build_evalset(config: EvalsetConfig) -> dict[str, int]:
    """Build the evaluation set described by ``config`` into ``config.out``.

    Returns:
        Patch counts per ``"<kind>/<source>"``.

    Raises:
        EvalsetError: no generated or no real source, an overlap with ``train_data``, or an
            output folder that is not empty.
        sources.SourceError, ManifestError: unreadable sources or unknown generators.
    """
    out = Path(config.out)
    if out.exists() and any(out.iterdir()):
        raise EvalsetError(f"{out}: output folder exists and is not empty")
    specs = resolve_generators(config.generators) if config.generators else []
    if not (config.generated or (specs and config.num_generated)):
        raise EvalsetError("no generated source: pass --generated NAME=DIR or --generators")
    if not (config.demo or config.reconstruct or config.pristine):
        raise EvalsetError("no real source: pass --reconstruct DIR and/or --pristine DIR")
    if config.demo:
        logger.info(
            "no source given: demo photographs, generated images from %s", config.generators
        )
    refs = _list_sources(config)
    if config.train_data:  # checked before any pipeline runs
        train_ids = training_image_ids(config.train_data)
        planned = {f"real/{r.image_id}" for r in (*refs[RECONSTRUCTED], *refs[PRISTINE])}
        planned |= {f"generated/{n}/{r.image_id}" for n in config.generated for r in refs[n]}
        shared = sorted(planned & train_ids)
        if shared:
            raise EvalsetError(
                f"{len(shared)} image(s) also in the training build {config.train_data} (e.g. "
                f"{shared[:3]}); the evaluation set must be independent of the training images"
            )
    rng = np.random.default_rng(config.seed)

    by_source: dict[str, list[_Chunk]] = {}
    chunks = (*_real_chunks(specs, config, refs), *_generated_chunks(specs, config, refs, rng))
    for chunk in chunks:
        if len(chunk.boxes):
            by_source.setdefault(f"{chunk.kind}/{chunk.source}", []).append(chunk)

    parts, counts = [], {}
    for key, chunks in by_source.items():
        ds = _dataset(chunks, config.patch_size)
        if config.max_per_source is not None and len(ds) > config.max_per_source:
            keep = np.sort(rng.choice(len(ds), config.max_per_source, replace=False))
            ds = ds.select(keep.tolist())
        parts.append(ds)
        counts[key] = len(ds)
        logger.info("%s: %d patches", key, len(ds))
    DatasetDict({EVAL: concatenate_datasets(parts)}).save_to_disk(str(out))
    info = {"config": asdict(config), "counts": counts}
    (out / INFO_FILE).write_text(json.dumps(info, indent=2))
    return counts
