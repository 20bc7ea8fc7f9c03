"""The build loop: source image -> generators -> pairing -> shards, split across processes.

Work items ("jobs") are listed deterministically from the sources: every real image, then each
generator's generated images. Jobs are cut into shards; shard ``i`` goes to process
``i % world_size`` (``accelerate launch -m dpgen build ...`` splits a build over GPUs). Every
random choice of a job (mask, steps, guidance, pipeline seeds, prompt) comes from a generator
seeded by ``(seed, job key)``, so a job's rows do not depend on which process ran it, on the
shard size, or on whether the build was interrupted.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from accelerate import PartialState
from datasets import DatasetInfo
from PIL import Image
from tqdm.auto import tqdm

from dpgen import __version__
from dpgen.card import CITATION
from dpgen.errors import InputError
from dpgen.grid import inside_grid, outside_grid
from dpgen.manifest import (
    GeneratorSpec,
    common_multiple,
    generated_locations,
    resolve_generators,
)
from dpgen.masks import MaskError, parse_mask_policy, to_image
from dpgen.options import OptionError, Options, option
from dpgen.pairing import PatchRows, View, pair_generated, pair_real
from dpgen.pipelines import Generator
from dpgen.regions import RegionChooser, no_region
from dpgen.schema import (
    IMAGE_FEATURES,
    IMAGES,
    NEGATIVES,
    PAIRS,
    SOURCE_GENERATED,
    SOURCE_REAL,
    generator_names,
    patch_features,
)
from dpgen.semantic import SEMANTIC_RULES
from dpgen.shards import commit_shard, done_shards, finalize, rows_table, to_table
from dpgen.sources import (
    GeneratedSource,
    SourceError,
    SourceRef,
    list_generated,
    list_images,
    load_image,
    load_prompts,
    prepare,
)

logger = logging.getLogger(__name__)


class BuildError(InputError):
    """The build cannot start or resume as asked (settings, arguments); nothing was written."""


def parse_grid(text: str) -> tuple[int, int]:
    """``"4x4"`` -> ``(4, 4)``: the patch grid, ROWSxCOLS."""
    rows, sep, cols = text.lower().partition("x")
    if not (sep and rows.isdigit() and cols.isdigit() and int(rows) > 0 and int(cols) > 0):
        raise ValueError(f"a grid is ROWSxCOLS like 4x4, got {text!r}")
    return int(rows), int(cols)


@dataclass(kw_only=True)
class RoundtripConfig(Options):
    """``dpgen roundtrip``: real images encoded and decoded by each generator's VAE.

    The rows have the build's schema: every grid position is an outside position and the K
    reconstructions are its regenerated views (`dpgen.pairing`).
    """

    mode: ClassVar[str] = "roundtrip"

    out: Path = option(help="output directory (a datasets.DatasetDict in save_to_disk layout)")
    generators: list[str] = option(
        ["tiny-sd21", "tiny-sdxl", "tiny-flux"],
        help="manifest names or YAML paths, comma-separated, in ClassLabel order",
    )
    real: str | None = option(
        None, help="folder or Hub dataset of real images (default: the bundled photographs)"
    )
    num_images: int | None = option(None, help="cap on real images (default: all)")
    seed: int = option(0, help="fixes every random choice")
    patch_size: int = option(64, help="side P of the square patches")
    grid: tuple[int, int] = option((4, 4), help="ROWSxCOLS patch grid", parse=parse_grid)
    margin: int = option(8, help="px kept between outside patches and the mask")
    shard_size: int = option(4, help="images per shard (the unit of resume)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.patch_size < 8 or self.margin < 0 or self.shard_size < 1:
            raise OptionError(
                f"need patch_size >= 8, margin >= 0, shard_size >= 1; got {self.patch_size}, "
                f"{self.margin}, {self.shard_size}"
            )
        if self.num_images is not None and self.num_images < 1:
            raise OptionError(f"num_images must be >= 1, got {self.num_images}")

    def fingerprint(self) -> dict[str, Any]:
        """The settings that determine the rows (a rerun must match them to resume)."""
        data = self.to_dict()
        data.pop("out")
        data["mode"] = self.mode
        return data


@dataclass(kw_only=True)
class BuildConfig(RoundtripConfig):
    """``dpgen build``: the pretraining set (paper Sec. 3.1).

    Real images are inpainted by every generator under one mask; each generator's generated
    images (made by its text-to-image pipeline, or read from ``generated``) are inpainted by it.
    """

    mode: ClassVar[str] = "inpaint"

    generated: dict[str, str] = option(
        {},
        metavar="NAME=LOCATION",
        help="NAME=LOCATION: NAME's generated images (NAME: a manifest name, or its label when "
        "unambiguous); LOCATION a folder, or a dataset [hf://]DATASET[/CONFIG][:SPLIT] whose "
        "DATASET is a Hub id or a local snapshot folder (WebDataset shards or parquet); "
        "repeatable. Generators without one make theirs with their text-to-image pipeline",
    )
    generated_from: str | None = option(
        None,
        metavar="LOCATION",
        help="one dataset of generated images for every generator --generated does not name "
        "(e.g. lesc-unifi/dragon/ExtraLarge:train); each takes only its own models' samples",
    )
    generated_field: str | None = option(
        None,
        help="per-sample field naming each generated image's model (Dragon: model.txt; a "
        "column of a Hub dataset); default: the manifests' source_field",
    )
    prompts: str | None = option(
        None, help="COCO captions JSON or a text file of prompts (default: bundled)"
    )
    num_generated: int | None = option(
        None, help="generated images per generator (default: as many as real images)"
    )
    mask_policy: str = option(
        "train",
        help="where generators repaint: train, random or semantic, or per source set as "
        "real=POLICY,generated=POLICY (semantic applies to real images; generated ones, "
        "without annotations, default to train)",
    )
    annotations: str | None = option(None, help="COCO instances JSON (for --mask-policy semantic)")
    captions: str | None = option(
        None, help="COCO captions JSON: the prompts of semantic masks (--semantic-rule tgif)"
    )
    semantic_rule: str = option(
        "tgif",
        help="which COCO object a semantic mask repaints and its prompt: tgif (TGIF's rule, "
        "see dpgen.semantic) or uniform (a random non-crowd instance, the source's prompt)",
        choices=SEMANTIC_RULES,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            parse_mask_policy(self.mask_policy)
        except ValueError as err:
            raise OptionError(f"mask_policy: {err}") from None


@dataclass(frozen=True)
class Job:
    """One source image to process. ``key`` is unique in the build and seeds its randomness."""

    key: str
    source_set: str
    generator: str  # the generator of a generated source; "" for real
    ref: SourceRef | None  # None: made by the generator's text-to-image pipeline

    @property
    def image_id(self) -> str:
        """``<id>`` for real images, ``<generator>/<id>`` for generated ones (ids repeat across generators)."""
        return self.key.split("/", 1)[1]


@dataclass
class BuildStats:
    """Counters of one process's run, for the progress bar and the benchmark."""

    images: int = 0
    skipped: int = 0
    patches: int = 0
    pipeline_seconds: float = 0.0
    wall_seconds: float = 0.0


@dataclass
class _Result:
    pairs: PatchRows
    negatives: PatchRows
    record: dict[str, Any]


class Builder:
    """Runs the jobs of a `BuildConfig` on this process's device."""

    def __init__(self, cfg: RoundtripConfig, state: PartialState | None = None) -> None:
        self.cfg = cfg
        # Without cpu=True, accelerate treats torchrun / `accelerate launch --multi_gpu` ranks on a
        # machine with no GPU as single processes (each would build everything).
        self.state = state or PartialState(cpu=not torch.cuda.is_available())
        self.specs = resolve_generators(cfg.generators)
        # --generated names: manifest names or labels; --generated-from fills in the rest.
        self.generated = generated_locations(
            getattr(cfg, "generated", {}), getattr(cfg, "generated_from", None), self.specs
        )
        self.source_report: list[dict] = []
        self.label_names = generator_names([s.label for s in self.specs])
        self.features = {
            PAIRS: patch_features(cfg.patch_size, self.label_names),
            NEGATIVES: patch_features(cfg.patch_size, self.label_names),
            IMAGES: IMAGE_FEATURES,
        }
        self.generators = {s.name: Generator(s, device=self.state.device) for s in self.specs}
        self.stats = BuildStats()
        self._prompts: list[str] | None = None
        # The mask policy per source set, TGIF's semantic rule and its files (read up front).
        self.regions = None
        if cfg.mode != "roundtrip":
            self.regions = RegionChooser(
                parse_mask_policy(cfg.mask_policy), cfg.grid, cfg.patch_size, cfg.margin,
                cfg.annotations, cfg.captions, cfg.semantic_rule,
            )  # fmt: skip

    # -- job list ------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        cfg = self.cfg
        real = list_images(cfg.real, SOURCE_REAL, num_images=cfg.num_images, seed=cfg.seed)
        jobs = [Job(f"real/{r.image_id}", SOURCE_REAL, "", r) for r in real]
        if cfg.mode == "roundtrip":
            return jobs
        self.regions.check_real(real)
        count = cfg.num_generated if cfg.num_generated is not None else len(real)
        listing = list_generated(
            [
                GeneratedSource(spec.name, location, cfg.generated_field or spec.source_field,
                                spec.source_models, required=bool(cfg.generated_field))
                for spec in self.specs
                if (location := self.generated.get(spec.name))
            ],
            count, cfg.seed,
        ) if count else None  # fmt: skip
        self.source_report = listing.report if listing else []
        for spec in self.specs:
            if listing and spec.name in listing.refs:
                refs = listing.refs[spec.name]
                jobs += [
                    Job(f"generated/{spec.name}/{r.image_id}", SOURCE_GENERATED, spec.name, r)
                    for r in refs
                ]
            else:
                jobs += [
                    Job(f"generated/{spec.name}/{i:06d}", SOURCE_GENERATED, spec.name, None)
                    for i in range(count)
                ]
        return jobs

    # -- one job -------------------------------------------------------------------------
    def _rng(self, job: Job) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, zlib.crc32(job.key.encode())])

    def _draw(self, spec: GeneratorSpec, rng: np.random.Generator) -> tuple[int, float, int]:
        steps = int(rng.integers(spec.steps[0], spec.steps[1] + 1))
        guidance = float(rng.uniform(*spec.guidance))
        return steps, round(guidance, 4), int(rng.integers(2**31 - 1))

    def _mask(self, job: Job, prepared, rng: np.random.Generator, where: str):
        """The image's `dpgen.regions.Region`: its mask policy per source set, and prompt."""
        if self.cfg.mode == "roundtrip":
            return no_region(prepared.image.size[1], prepared.image.size[0])
        return self.regions.choose(job.source_set, job.ref, prepared, rng, where)

    def _timed(self, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.stats.pipeline_seconds += time.perf_counter() - start

    def _source(self, job: Job, rng: np.random.Generator):
        """Load (or make) and prepare the source image of a job."""
        cfg = self.cfg
        min_side = 2 * cfg.patch_size
        if job.source_set == SOURCE_REAL:
            multiple = common_multiple(self.specs)
            max_side = min(s.resolution for s in self.specs)
        else:
            spec = self.generators[job.generator].spec
            multiple, max_side = spec.size_multiple, spec.resolution
        if job.ref is not None:
            image, _ = load_image(job.ref)
            prepared = prepare(image, multiple, max_side, min_side, where=job.ref.path)
            return prepared, job.ref.path, job.ref.prompt, None
        spec = self.generators[job.generator].spec
        if self._prompts is None:
            self._prompts = load_prompts(cfg.prompts)
        prompt = self._prompts[int(rng.integers(len(self._prompts)))]
        steps, guidance, seed = self._draw(spec, rng)
        size = spec.resolution
        image = self._timed(
            self.generators[job.generator].generate, [prompt], [seed], steps, guidance, size, size
        )[0]
        prepared = prepare(image, multiple, max_side, min_side, where=job.key)
        return prepared, "", prompt, (steps, guidance, seed)

    def run_job(self, job: Job) -> _Result:
        """Process one job. Raises SourceError / MaskError for a bad source."""
        cfg, rng = self.cfg, self._rng(job)
        rows, cols = cfg.grid
        prepared, path, prompt, t2i = self._source(job, rng)
        where = path or job.key
        region = self._mask(job, prepared, rng, where)
        mask = region.mask
        # A real image's prompt: TGIF's caption prompt (semantic), empty (random), else its own.
        prompt = prompt if region.prompt is None else region.prompt
        inside = inside_grid(mask, rows, cols, cfg.patch_size)
        outside = outside_grid(mask, rows, cols, cfg.patch_size, cfg.margin)
        needed = (
            inside.cells if job.source_set == SOURCE_GENERATED else inside.cells + outside.cells
        )
        if not needed:
            w, h = prepared.image.size
            raise SourceError(f"{where}: no {cfg.patch_size}px patch fits the mask on {w}x{h}")
        source = np.asarray(prepared.image, dtype=np.uint8)
        mask_image = to_image(mask)
        names = [job.generator] if job.source_set == SOURCE_GENERATED else list(self.generators)
        views, settings = [], []
        for name in names:
            gen = self.generators[name]
            if cfg.mode == "roundtrip":  # the VAE is deterministic: nothing to draw
                out = self._timed(gen.roundtrip, [prepared.image])[0]
                steps, guidance = 0, 0.0
            else:
                steps, guidance, seed = self._draw(gen.spec, rng)
                out = self._timed(gen.inpaint, [prepared.image], [mask_image], [prompt], [seed], steps, guidance)[0]  # fmt: skip
            label = self.label_names.index(gen.spec.label)
            views.append(View(name, label, np.asarray(out, dtype=np.uint8)))
            settings.append((steps, guidance))
        if job.source_set == SOURCE_GENERATED:
            pairs = pair_generated(job.image_id, source, views[0], inside)
            negatives = PatchRows.empty(cfg.patch_size)
        else:
            pairs, negatives = pair_real(job.image_id, source, views, inside, outside)
        record = {
            "image_id": job.image_id,
            "source_set": job.source_set,
            "generator": job.generator,
            "path": path,
            "original_size": list(prepared.original_size),
            "scale": prepared.scale,
            "crop": list(prepared.crop),
            "size": list(prepared.image.size),
            "mask": mask_image,
            **region.record(),
            "source_model": job.ref.model if job.ref else "",
            "prompt": prompt,
            "seed": t2i[2] if t2i else -1,
            "inpainted_by": names,
            "steps": [s for s, _ in settings],
            "guidance": [g for _, g in settings],
            "grid_inside": [inside.rows, inside.cols],
            "grid_outside": [outside.rows, outside.cols],
            "n_inside": len(inside.cells),
            "n_outside": len(outside.cells),
        }
        return _Result(pairs, negatives, record)

    # -- shards --------------------------------------------------------------------------
    def run_shard(self, index: int, jobs: list[Job], bar: tqdm) -> None:
        results, skipped = [], []
        for job in jobs:
            try:
                results.append(self.run_job(job))
                self.stats.images += 1
            except (SourceError, MaskError) as err:
                logger.warning("skipped %s: %s", job.key, err)
                skipped.append(
                    {"key": job.key, "path": job.ref.path if job.ref else "", "reason": str(err)}
                )
                self.stats.skipped += 1
            bar.update(1)
            elapsed = max(time.perf_counter() - self._start, 1e-9)
            bar.set_postfix(
                img_s=f"{self.stats.images / elapsed:.2f}",
                patch_s=f"{self.stats.patches / elapsed:.0f}",
            )
        records = {k: [r.record[k] for r in results] for k in IMAGE_FEATURES}
        tables = {
            PAIRS: rows_table([r.pairs for r in results], self.features[PAIRS]),
            NEGATIVES: rows_table([r.negatives for r in results], self.features[NEGATIVES]),
            IMAGES: to_table(records, IMAGE_FEATURES),
        }
        self.stats.patches += tables[PAIRS].num_rows + tables[NEGATIVES].num_rows
        commit_shard(
            self.cfg.out, index, tables, {"jobs": [j.key for j in jobs], "skipped": skipped}
        )

    def run(self) -> BuildStats:
        """Run this process's unfinished shards, then (main process) finalize the directory."""
        cfg, state = self.cfg, self.state
        out = Path(cfg.out)
        jobs = self.jobs()
        num_shards = max(1, math.ceil(len(jobs) / cfg.shard_size))
        self._check_resume(out, len(jobs))
        done = done_shards(out)
        mine = [
            i
            for i in range(num_shards)
            if i % state.num_processes == state.process_index and i not in done
        ]
        if state.is_main_process:
            logger.info(
                "%d jobs in %d shards on %d process(es); %d shard(s) already done",
                len(jobs), num_shards, state.num_processes, len(done),
            )  # fmt: skip
        self._start = time.perf_counter()
        my_jobs = sum(len(jobs[i * cfg.shard_size : (i + 1) * cfg.shard_size]) for i in mine)
        with tqdm(
            total=my_jobs, desc=f"dpgen[{state.process_index}]", unit="img", disable=not my_jobs
        ) as bar:
            for i in mine:
                self.run_shard(i, jobs[i * cfg.shard_size : (i + 1) * cfg.shard_size], bar)
        self.stats.wall_seconds = time.perf_counter() - self._start
        state.wait_for_everyone()
        if state.is_main_process:
            self._finalize(out, num_shards)
        state.wait_for_everyone()
        return self.stats

    def _check_resume(self, out: Path, num_jobs: int) -> None:
        settings = {"config": self.cfg.fingerprint(), "jobs": num_jobs}
        path = out / "build.json"
        if path.exists():
            previous = json.loads(path.read_text())
            if previous != settings:
                raise BuildError(
                    f"{path}: {out} was built with other settings; use a new --out or the same "
                    f"command. Was: {previous}; now: {settings}"
                )
        elif self.state.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(settings, indent=1))
        self.state.wait_for_everyone()

    def _finalize(self, out: Path, num_shards: int) -> None:
        provenance = self.provenance()
        info = DatasetInfo(
            description=json.dumps(provenance, sort_keys=True),
            citation=CITATION,
            homepage="https://github.com/mever-team/diffusionprint",
        )
        finalize(out, self.features, num_shards, info)
        (out / "provenance.json").write_text(json.dumps(provenance, indent=1, sort_keys=True))
        skipped = [s for entry in done_shards(out).values() for s in entry["skipped"]]
        report = {"skipped": skipped, "generated_sources": self.source_report}
        (out / "report.json").write_text(json.dumps(report, indent=1))
        if skipped:
            logger.warning("%d source(s) skipped; see %s", len(skipped), out / "report.json")

    def provenance(self) -> dict[str, Any]:
        """Resolved manifests, package versions, git revision, seeds: stored in the dataset info."""
        import datasets
        import diffusers
        import transformers

        try:
            rev = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                text=True, check=True, timeout=10,
            ).stdout.strip()  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            rev = "unknown"
        return {
            "dpgen": __version__,
            "git_revision": rev,
            "config": self.cfg.fingerprint(),
            "generators": [s.to_dict() for s in self.specs],
            "generator_labels": self.label_names,
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "transformers": transformers.__version__,
                "datasets": datasets.__version__,
                "numpy": np.__version__,
                "pillow": Image.__version__,
            },
        }


def build(cfg: RoundtripConfig) -> BuildStats:
    """Run a build (or a VAE round trip) to completion on this process's share of the shards."""
    return Builder(cfg).run()
