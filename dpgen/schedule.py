"""Generator-major passes: each generator loaded once per pass, run on every image, released.

A *pass* covers a unit of consecutive shards of one process (the shard stays the unit of
resume). For each generator in ``--generators`` order, the pass loads its pipelines, makes its
text-to-image sources, then runs its inpaintings (or VAE round trips) of every job of the pass
that it paints, and frees it before the next generator: at most one generator is resident per
process. Real images wait in memory for their K inpaintings. Loading is expensive (tens of
seconds for FLUX.1 from a local disk), so a pass should hold enough images that loads stay a
small share of it; each load and release is logged with its time.

Batches (``--batch-size N``): within one shard, one generator's calls of one kind are taken in
job order and grouped by image size into calls of up to N images. Batches never cross a shard,
so a resumed shard makes exactly the calls of an uninterrupted run, whatever the number of
processes. A call has one step count and one guidance scale: with N = 1 they are the image's
own draws (`dpgen.jobs.Draw`, the rows of one image per call); with N > 1 each batch draws them
from its own stream, seeded by the build seed and the batch's first job, while every image keeps
its own seeded initial noise. The image records say what each image got.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from dpgen.jobs import Draw, PreparedJob, draw
from dpgen.manifest import GeneratorSpec
from dpgen.masks import to_image
from dpgen.pipelines import Generator
from dpgen.sources import SourceError, prepare

logger = logging.getLogger(__name__)

TEXT2IMAGE, INPAINT, ROUNDTRIP = "text2image", "inpaint", "roundtrip"


@dataclass
class Call:
    """One pipeline call: a generator, a kind, its images (one size) and shared settings."""

    generator: str
    kind: str
    jobs: list[PreparedJob]
    steps: int
    guidance: float


def _own_draw(p: PreparedJob, generator: str, kind: str) -> Draw:
    return p.text2image if kind == TEXT2IMAGE else p.draws[generator]


def plan_calls(
    shard: list[PreparedJob], spec: GeneratorSpec, kind: str, batch_size: int, seed: int
) -> list[Call]:
    """The calls of one generator and kind over one shard's prepared jobs (module docstring)."""
    name = spec.name
    if kind == TEXT2IMAGE:
        todo = [p for p in shard if p.text2image is not None and p.job.generator == name]
    else:
        todo = [p for p in shard if name in p.painters]
    calls, open_batches = [], {}
    for p in todo:
        batch = open_batches.setdefault(tuple(p.size), [])
        batch.append(p)
        if len(batch) == batch_size:
            calls.append(batch)
            del open_batches[tuple(p.size)]
    calls += list(open_batches.values())
    position = {id(p): i for i, p in enumerate(shard)}
    calls.sort(key=lambda b: position[id(b[0])])  # in the order of each call's first job
    return [_settle(b, spec, kind, batch_size, seed) for b in calls]


def _settle(batch: list[PreparedJob], spec, kind: str, batch_size: int, seed: int) -> Call:
    if kind == ROUNDTRIP:
        return Call(spec.name, kind, batch, 0, 0.0)
    if batch_size == 1:
        own = _own_draw(batch[0], spec.name, kind)
        return Call(spec.name, kind, batch, own.steps, own.guidance)
    stream = np.random.default_rng(
        [seed, zlib.crc32(f"{kind}/{spec.name}/{batch[0].job.key}".encode())]
    )
    shared = draw(spec, stream)
    return Call(spec.name, kind, batch, shared.steps, shared.guidance)


class GeneratorPass:
    """Runs the calls of a pass generator by generator (module docstring).

    Args:
        specs: the generators, in ``--generators`` order.
        make_generator: builds a `dpgen.pipelines.Generator` for a spec (device, offload).
        batch_size: images per call at most.
        seed: the build seed (batch streams).
        roundtrip: VAE round trips instead of inpaintings.
        source_rule: (size multiple, longest side) of a made source (`JobPlanner.source_rule`).
        min_side: shortest prepared side allowed.
    """

    def __init__(
        self,
        specs: list[GeneratorSpec],
        make_generator: Callable[[GeneratorSpec], Generator],
        *,
        batch_size: int,
        seed: int,
        roundtrip: bool,
        source_rule: Callable,
        min_side: int,
    ) -> None:
        self.specs, self.make_generator = specs, make_generator
        self.batch_size, self.seed, self.roundtrip = batch_size, seed, roundtrip
        self.source_rule, self.min_side = source_rule, min_side
        self.pipeline_seconds = 0.0
        self.load_seconds = 0.0

    def run(self, shards: list[list[PreparedJob]]) -> None:
        """Fill every prepared job's ``image`` (made sources), ``views`` and ``settings``."""
        for spec in self.specs:
            kinds = [ROUNDTRIP] if self.roundtrip else [TEXT2IMAGE, INPAINT]
            calls = {
                k: [c for s in shards for c in plan_calls(s, spec, k, self.batch_size, self.seed)]
                for k in kinds
            }
            if not any(calls.values()):
                continue
            generator = self.make_generator(spec)
            try:
                for kind in kinds:
                    self._turn(generator, kind, calls[kind])
            finally:
                generator.unload()
                logger.info("%s: released", spec.name)

    def _turn(self, generator: Generator, kind: str, calls: list[Call]) -> None:
        if not calls:
            return
        role = "text2image" if kind == TEXT2IMAGE else "inpaint"
        start = time.perf_counter()
        generator.load(role)
        seconds = time.perf_counter() - start
        self.load_seconds += seconds
        logger.info(
            "%s: loaded %s in %.1f s (%d call(s))", generator.spec.name, role, seconds, len(calls)
        )
        for call in calls:
            start = time.perf_counter()
            self._call(generator, call)
            self.pipeline_seconds += time.perf_counter() - start
        if kind == TEXT2IMAGE:
            generator.release("text2image")

    def _call(self, generator: Generator, call: Call) -> None:
        jobs = call.jobs
        if call.kind == TEXT2IMAGE:
            width, height = jobs[0].size
            seeds = [p.text2image.seed for p in jobs]
            images = generator.generate(
                [p.prompt for p in jobs], seeds, call.steps, call.guidance, width, height
            )
            for p, image in zip(jobs, images, strict=True):
                self._made_source(p, image, call)
            return
        sources = [p.image for p in jobs]
        if call.kind == ROUNDTRIP:
            outputs = generator.roundtrip(sources)  # deterministic: no steps, no guidance
        else:
            masks = [to_image(p.mask) for p in jobs]
            seeds = [p.draws[call.generator].seed for p in jobs]
            outputs = generator.inpaint(
                sources, masks, [p.prompt for p in jobs], seeds, call.steps, call.guidance
            )
        for p, out in zip(jobs, outputs, strict=True):
            p.views[call.generator] = np.asarray(out, dtype=np.uint8)
            p.settings[call.generator] = (call.steps, call.guidance)

    def _made_source(self, p: PreparedJob, image, call: Call) -> None:
        multiple, max_side = self.source_rule(p.job)
        prepared = prepare(image, multiple, max_side, self.min_side, where=p.job.key)
        if prepared.image.size != tuple(p.size):
            raise SourceError(f"{p.job.key}: made {prepared.image.size}, planned {tuple(p.size)}")
        p.image = prepared.image
        p.source_settings = (call.steps, call.guidance)


def shard_units(shards: list[int], sizes: dict[int, int], pass_size: int) -> Iterator[list[int]]:
    """Consecutive groups of ``shards`` holding at least ``pass_size`` jobs (the last: the rest)."""
    unit, count = [], 0
    for index in shards:
        unit.append(index)
        count += sizes[index]
        if count >= pass_size:
            yield unit
            unit, count = [], 0
    if unit:
        yield unit
