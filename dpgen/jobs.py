"""The work of a build, listed and decided before any pipeline runs.

A *job* is one source image: every real image (inpainted by all K generators, or round-tripped
through their VAEs), then each generator's generated images (made by its text-to-image pipeline
or read from a folder, and inpainted by that generator). Jobs are listed deterministically from
the sources (`list_jobs`).

Every random choice of a job comes from one stream seeded by ``(seed, crc32(job key))``, drawn
in a fixed order (`prepare_job`): the prompt and the text-to-image settings of a generated
source, then the mask, then each inpainting generator's ``(steps, guidance, seed)`` in
``--generators`` order. A job's rows therefore depend on nothing but the seed and the job:
not on the process that ran it, the shard size, the order generators run in, or a kill.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from dpgen.grid import Grid, inside_grid, outside_grid
from dpgen.manifest import GeneratorSpec, common_multiple
from dpgen.masks import (
    check_mask,
    choose_instance,
    random_mask,
    semantic_mask,
    to_image,
    training_mask,
    transform_mask,
)
from dpgen.schema import SOURCE_GENERATED, SOURCE_REAL
from dpgen.sources import SourceError, SourceRef, list_images, load_image, prepare


@dataclass(frozen=True)
class Job:
    """One source image to process. ``key`` is unique in the build and seeds its randomness.

    Attributes:
        key: ``real/<id>`` or ``generated/<generator>/<id>``.
        source_set: `dpgen.schema.SOURCE_REAL` or `SOURCE_GENERATED`.
        generator: the generator of a generated source; "" for real.
        ref: where the source image is; None when the generator's text-to-image pipeline
            makes it.
    """

    key: str
    source_set: str
    generator: str
    ref: SourceRef | None

    @property
    def image_id(self) -> str:
        """``<id>`` for real images, ``<generator>/<id>`` for generated ones."""
        return self.key.split("/", 1)[1]


@dataclass(frozen=True)
class Draw:
    """The settings of one pipeline call for one image: steps, guidance and the noise seed."""

    steps: int
    guidance: float
    seed: int


def draw(spec: GeneratorSpec, rng: np.random.Generator) -> Draw:
    """Steps uniform in ``spec.steps`` (inclusive), guidance uniform in ``spec.guidance``
    (rounded to 4 decimals), a seed in [0, 2^31 - 1): three draws, in that order."""
    steps = int(rng.integers(spec.steps[0], spec.steps[1] + 1))
    guidance = float(rng.uniform(*spec.guidance))
    return Draw(steps, round(guidance, 4), int(rng.integers(2**31 - 1)))


def job_rng(seed: int, key: str) -> np.random.Generator:
    """The job's one random stream."""
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


@dataclass
class PreparedJob:
    """A job with every decision made; the pipelines fill in its images.

    Attributes:
        job: the job.
        mask: (H, W) bool, True where generators repaint (all False for a VAE round trip).
        inside, outside: the patch grids inside and outside the mask.
        painters: generator names that inpaint (or round-trip) the source, in order.
        draws: each painter's `Draw`.
        prompt: the inpainting prompt (and the text-to-image prompt of a made source).
        text2image: the `Draw` of a source the generator makes, else None.
        size: (W, H) of the prepared source.
        image: the prepared source, once loaded or made.
        record: what the build's ``images`` split records of the source's preparation.
        views: painter name -> (H, W, 3) uint8 output, filled by the pipelines.
        settings: painter name -> (steps, guidance) actually used (a batched call shares them).
    """

    job: Job
    mask: np.ndarray
    inside: Grid
    outside: Grid
    painters: list[str]
    draws: dict[str, Draw]
    prompt: str
    text2image: Draw | None
    size: tuple[int, int]
    image: Image.Image | None = None
    record: dict = field(default_factory=dict)
    views: dict[str, np.ndarray] = field(default_factory=dict)
    settings: dict[str, tuple[int, float]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """The source file, or the job key of a made source (for messages)."""
        return self.job.ref.path if self.job.ref else self.job.key


def list_jobs(
    real: str | None,
    specs: list[GeneratorSpec],
    *,
    num_images: int | None,
    seed: int,
    generated: dict[str, str] | None = None,
    num_generated: int | None = None,
) -> list[Job]:
    """Every job of a build, in build order: real images, then each generator's generated ones.

    Args:
        real: folder or dataset of real images (None: the bundled photographs).
        specs: the generators, in ``--generators`` order.
        num_images: cap on real images.
        seed: seed of the subsampling of sources.
        generated: generator name -> folder or dataset of its generated images; None for a VAE
            round trip (no generated jobs at all).
        num_generated: generated images per generator (None: as many as real images).
    """
    refs = list_images(real, SOURCE_REAL, num_images=num_images, seed=seed)
    jobs = [Job(f"real/{r.image_id}", SOURCE_REAL, "", r) for r in refs]
    if generated is None:
        return jobs
    count = num_generated if num_generated is not None else len(refs)
    for spec in specs:
        if spec.name in generated:
            found = list_images(generated[spec.name], SOURCE_GENERATED, spec.name, count, seed)
            jobs += [
                Job(f"generated/{spec.name}/{r.image_id}", SOURCE_GENERATED, spec.name, r)
                for r in found
            ]
        else:
            jobs += [
                Job(f"generated/{spec.name}/{i:06d}", SOURCE_GENERATED, spec.name, None)
                for i in range(count)
            ]
    return jobs


class JobPlanner:
    """Makes every decision of a job before any pipeline runs (`prepare`).

    Args:
        specs: the generators, in ``--generators`` order.
        seed: the build's seed.
        roundtrip: VAE round trips (no mask, no draws) instead of inpaintings.
        mask_policy: ``train``, ``random`` or ``semantic`` (`dpgen.masks.MASK_POLICIES`).
        grid: (rows, cols); patch: P; margin: px between outside patches and the mask.
        prompts: loads the text-to-image prompts on first use.
        annotations: loads the COCO instances (file stem -> annotations) on first use.
    """

    def __init__(
        self,
        specs: list[GeneratorSpec],
        *,
        seed: int,
        roundtrip: bool,
        mask_policy: str,
        grid: tuple[int, int],
        patch: int,
        margin: int,
        prompts=None,
        annotations=None,
    ) -> None:
        self.specs = {s.name: s for s in specs}
        self.seed, self.roundtrip, self.mask_policy = seed, roundtrip, mask_policy
        self.grid, self.patch, self.margin = grid, patch, margin
        self._load_prompts, self._load_annotations = prompts, annotations
        self._prompts: list[str] | None = None
        self._coco: dict[str, list[dict]] | None = None
        self.real_multiple = common_multiple(specs)
        self.real_max_side = min(s.resolution for s in specs)

    def prepare(self, job: Job) -> PreparedJob:
        """Every decision of ``job``, drawn from its stream in the module docstring's order.

        Raises:
            SourceError, MaskError: the source cannot be used (the build skips it).
        """
        rng = job_rng(self.seed, job.key)
        prompt, text2image, record, image = self._source(job, rng)
        size = image.size if image is not None else tuple(record["size"])
        mask = self._mask(job, record, size, rng)
        rows, cols = self.grid
        inside = inside_grid(mask, rows, cols, self.patch)
        outside = outside_grid(mask, rows, cols, self.patch, self.margin)
        needed = (
            inside.cells if job.source_set == SOURCE_GENERATED else inside.cells + outside.cells
        )
        where = job.ref.path if job.ref else job.key
        if not needed:
            raise SourceError(
                f"{where}: no {self.patch}px patch fits the mask on {size[0]}x{size[1]}"
            )
        painters = [job.generator] if job.source_set == SOURCE_GENERATED else list(self.specs)
        draws = {} if self.roundtrip else {n: draw(self.specs[n], rng) for n in painters}
        return PreparedJob(
            job, mask, inside, outside, painters, draws, prompt, text2image, size, image, record
        )

    def _source(self, job: Job, rng: np.random.Generator):
        """(prompt, text-to-image draw, preparation record, prepared image or None)."""
        if job.ref is not None:
            multiple, max_side = self.source_rule(job)
            loaded, _ = load_image(job.ref)
            prepared = prepare(loaded, multiple, max_side, 2 * self.patch, where=job.ref.path)
            record = _preparation(prepared.original_size, prepared.scale, prepared.crop)
            return job.ref.prompt, None, record, prepared.image
        if self._prompts is None:
            self._prompts = self._load_prompts()
        prompt = self._prompts[int(rng.integers(len(self._prompts)))]
        spec = self.specs[job.generator]
        side = spec.resolution  # a multiple of the spec's size multiple: prepare keeps it whole
        record = _preparation((side, side), 1.0, (0, 0, side, side))
        return prompt, draw(spec, rng), record, None

    def source_rule(self, job: Job) -> tuple[int, int]:
        """(size multiple, longest side) a job's source is prepared to (`dpgen.sources.prepare`).

        Real images go to every generator: the lcm of their multiples and the smallest
        resolution; a generated image is prepared for its own generator.
        """
        if job.source_set == SOURCE_REAL:
            return self.real_multiple, self.real_max_side
        spec = self.specs[job.generator]
        return spec.size_multiple, spec.resolution

    def _mask(self, job: Job, record: dict, size: tuple[int, int], rng) -> np.ndarray:
        width, height = size
        rows, cols = self.grid
        where = job.ref.path if job.ref else job.key
        if self.roundtrip:
            return np.zeros((height, width), dtype=bool)
        if self.mask_policy == "train":
            mask = training_mask(width, height, rng, rows, cols, self.patch, self.margin)
        elif self.mask_policy == "random":
            mask = random_mask(width, height, rng)
        else:  # semantic
            if self._coco is None:
                self._coco = self._load_annotations()
            stem = Path(job.ref.path).stem if job.ref else ""
            ann = choose_instance(self._coco.get(stem, []), rng, f"{where} ({stem!r})")
            full = semantic_mask(*record["original_size"], ann, kind="segm")
            mask = transform_mask(full, record["scale"], tuple(record["crop"]))
        check_mask(mask, where)
        return mask


def _preparation(original: tuple[int, int], scale: float, crop: tuple) -> dict:
    x0, y0, x1, y1 = crop
    return {
        "original_size": list(original),
        "scale": scale,
        "crop": list(crop),
        "size": [x1 - x0, y1 - y0],
    }


def image_record(p: PreparedJob, mask_policy: str) -> dict:
    """The job's row of the build's ``images`` split (`dpgen.schema.IMAGE_FEATURES`)."""
    return {
        "image_id": p.job.image_id,
        "source_set": p.job.source_set,
        "generator": p.job.generator,
        "path": p.job.ref.path if p.job.ref else "",
        **{k: p.record[k] for k in ("original_size", "scale", "crop", "size")},
        "mask": to_image(p.mask),
        "mask_policy": mask_policy,
        "prompt": p.prompt,
        "seed": p.text2image.seed if p.text2image else -1,
        "source_steps": p.record.get("source_steps", -1),
        "source_guidance": p.record.get("source_guidance", -1.0),
        "inpainted_by": p.painters,
        "steps": [p.settings[n][0] for n in p.painters],
        "guidance": [p.settings[n][1] for n in p.painters],
        "grid_inside": [p.inside.rows, p.inside.cols],
        "grid_outside": [p.outside.rows, p.outside.cols],
        "n_inside": len(p.inside.cells),
        "n_outside": len(p.outside.cells),
    }
