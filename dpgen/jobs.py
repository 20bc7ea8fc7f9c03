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

import numpy as np
from PIL import Image

from dpgen.grid import Grid, inside_grid, outside_grid
from dpgen.manifest import GeneratorSpec, common_multiple
from dpgen.masks import to_image
from dpgen.regions import Region, RegionChooser, no_region
from dpgen.schema import SOURCE_GENERATED, SOURCE_REAL
from dpgen.sources import Prepared, SourceError, SourceRef, load_image, prepare


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
        placed: how the source was (or will be) prepared: scale, crop, original size.
        region: the repainting decision (`dpgen.regions.Region`): policy, semantic choice.
        views: painter name -> (H, W, 3) uint8 output, filled by the pipelines.
        settings: painter name -> (steps, guidance) actually used (a batched call shares them).
        source_settings: (steps, guidance) a made source got; (-1, -1.0) otherwise.
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
    placed: Prepared | None = None
    region: Region | None = None
    views: dict[str, np.ndarray] = field(default_factory=dict)
    settings: dict[str, tuple[int, float]] = field(default_factory=dict)
    source_settings: tuple[int, float] = (-1, -1.0)

    @property
    def where(self) -> str:
        """The source file, or the job key of a made source (for messages)."""
        return self.job.ref.path if self.job.ref else self.job.key


def list_jobs(
    real: list[SourceRef],
    specs: list[GeneratorSpec],
    generated: dict[str, list[SourceRef]] | None,
    count: int,
) -> list[Job]:
    """Every job of a build, in build order: real images, then each generator's generated ones.

    Args:
        real: the real images, listed.
        specs: the generators, in ``--generators`` order.
        generated: generator name -> its listed generated images (`dpgen.sources.list_generated`);
            None for a VAE round trip (no generated jobs at all).
        count: generated images each generator without listed images makes.
    """
    jobs = [Job(f"real/{r.image_id}", SOURCE_REAL, "", r) for r in real]
    if generated is None:
        return jobs
    for spec in specs:
        if spec.name in generated:
            jobs += [
                Job(f"generated/{spec.name}/{r.image_id}", SOURCE_GENERATED, spec.name, r)
                for r in generated[spec.name]
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
        regions: where and with what prompt sources are repainted (`dpgen.regions`); None for
            VAE round trips (no mask, no draws).
        patch: P; grid: (rows, cols); margin: px between outside patches and the mask.
        prompts: loads the text-to-image prompts on first use.
    """

    def __init__(
        self,
        specs: list[GeneratorSpec],
        *,
        seed: int,
        regions: RegionChooser | None,
        grid: tuple[int, int],
        patch: int,
        margin: int,
        prompts=None,
    ) -> None:
        self.specs = {s.name: s for s in specs}
        self.seed, self.regions = seed, regions
        self.grid, self.patch, self.margin = grid, patch, margin
        self._load_prompts = prompts
        self._prompts: list[str] | None = None
        self.real_multiple = common_multiple(specs)
        self.real_max_side = min(s.resolution for s in specs)

    def prepare(self, job: Job) -> PreparedJob:
        """Every decision of ``job``, drawn from its stream in the module docstring's order.

        Raises:
            SourceError, MaskError: the source cannot be used (the build skips it).
        """
        rng = job_rng(self.seed, job.key)
        prompt, text2image, placed = self._source(job, rng)
        x0, y0, x1, y1 = placed.crop
        size = (x1 - x0, y1 - y0)
        where = job.ref.path if job.ref else job.key
        if self.regions is None:
            region = no_region(size[1], size[0])
        else:
            region = self.regions.choose(job.source_set, job.ref, placed, rng, where)
        if region.prompt is not None:  # the region's own (TGIF's caption prompt, or none)
            prompt = region.prompt
        rows, cols = self.grid
        inside = inside_grid(region.mask, rows, cols, self.patch)
        outside = outside_grid(region.mask, rows, cols, self.patch, self.margin)
        needed = (
            inside.cells if job.source_set == SOURCE_GENERATED else inside.cells + outside.cells
        )
        if not needed:
            raise SourceError(
                f"{where}: no {self.patch}px patch fits the mask on {size[0]}x{size[1]}"
            )
        painters = [job.generator] if job.source_set == SOURCE_GENERATED else list(self.specs)
        draws = {} if self.regions is None else {n: draw(self.specs[n], rng) for n in painters}
        return PreparedJob(
            job, region.mask, inside, outside, painters, draws, prompt, text2image, size,
            image=placed.image, placed=placed, region=region,
        )  # fmt: skip

    def _source(self, job: Job, rng: np.random.Generator) -> tuple[str, Draw | None, Prepared]:
        """(prompt, text-to-image draw, the source as prepared; no image yet for a made one)."""
        if job.ref is not None:
            multiple, max_side = self.source_rule(job)
            loaded, _ = load_image(job.ref)
            prepared = prepare(loaded, multiple, max_side, 2 * self.patch, where=job.ref.path)
            return job.ref.prompt, None, prepared
        if self._prompts is None:
            self._prompts = self._load_prompts()
        prompt = self._prompts[int(rng.integers(len(self._prompts)))]
        spec = self.specs[job.generator]
        side = spec.resolution  # a multiple of the spec's size multiple: prepare keeps it whole
        return prompt, draw(spec, rng), Prepared(None, 1.0, (0, 0, side, side), (side, side))

    def source_rule(self, job: Job) -> tuple[int, int]:
        """(size multiple, longest side) a job's source is prepared to (`dpgen.sources.prepare`).

        Real images go to every generator: the lcm of their multiples and the smallest
        resolution; a generated image is prepared for its own generator.
        """
        if job.source_set == SOURCE_REAL:
            return self.real_multiple, self.real_max_side
        spec = self.specs[job.generator]
        return spec.size_multiple, spec.resolution


def image_record(p: PreparedJob) -> dict:
    """The job's row of the build's ``images`` split (`dpgen.schema.IMAGE_FEATURES`)."""
    x0, y0, x1, y1 = p.placed.crop
    return {
        "image_id": p.job.image_id,
        "source_set": p.job.source_set,
        "generator": p.job.generator,
        "path": p.job.ref.path if p.job.ref else "",
        "source_model": p.job.ref.model if p.job.ref else "",
        "original_size": list(p.placed.original_size),
        "scale": p.placed.scale,
        "crop": [x0, y0, x1, y1],
        "size": [x1 - x0, y1 - y0],
        "mask": to_image(p.mask),
        **p.region.record(),
        "prompt": p.prompt,
        "seed": p.text2image.seed if p.text2image else -1,
        "source_steps": p.source_settings[0],
        "source_guidance": p.source_settings[1],
        "inpainted_by": p.painters,
        "steps": [p.settings[n][0] for n in p.painters],
        "guidance": [p.settings[n][1] for n in p.painters],
        "grid_inside": [p.inside.rows, p.inside.cols],
        "grid_outside": [p.outside.rows, p.outside.cols],
        "n_inside": len(p.inside.cells),
        "n_outside": len(p.outside.cells),
    }
