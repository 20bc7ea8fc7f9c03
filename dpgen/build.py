"""The build: jobs -> generator-major passes -> pairing -> committed shards, across processes.

Jobs (`dpgen.jobs`) are listed deterministically from the sources and cut into shards of
``--shard-size``; a shard is committed atomically with its ledger entry (`dpgen.shards`) and is
the unit of resume. The pending shards (not yet in the ledger) are spread over the processes
(``accelerate launch -m dpgen build`` splits a build over GPUs): pending shard ``j`` goes to
process ``j % world_size``, so a rerun after one of eight GPUs failed gives every process a
share of what is left. Each process runs its shards in passes of about ``--pass-size`` images
(`dpgen.schedule`): one generator resident at a time. Every random choice of a job comes from a
stream seeded by ``(seed, job key)``, so a job's rows do not depend on which process ran it, on
the shard or pass size, on the order generators run in, or on where a kill happened.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import subprocess
import time
from dataclasses import dataclass, field
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
from dpgen.jobs import Job, JobPlanner, PreparedJob, image_record, list_jobs
from dpgen.manifest import GeneratorSpec, generated_locations, resolve_generators
from dpgen.masks import MaskError, parse_mask_policy
from dpgen.options import OptionError, Options, option
from dpgen.pairing import PatchRows, View, pair_generated, pair_real
from dpgen.pipelines import OFFLOAD_MODES, PRETRAINED_WEIGHTS, Generator, resolve_checkpoint
from dpgen.random_weights import RANDOM_WEIGHTS
from dpgen.regions import RegionChooser
from dpgen.schedule import GeneratorPass, shard_units
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
from dpgen.shards import (
    commit_shard,
    done_shards,
    finalize,
    rows_table,
    settings_changes,
    skipped_sources,
    to_table,
)
from dpgen.sources import (
    GeneratedSource,
    SourceError,
    bundled_photos_dir,
    list_generated,
    list_images,
    load_prompts,
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
    pass_size: int = option(
        256,
        help="images per generator-major pass, in whole shards: each generator loads once per "
        "pass (FLUX.1 takes tens of seconds), and the pass's images wait in memory",
    )
    batch_size: int = option(
        1,
        help="images of one generator per pipeline call (TGIF: 3 for SD/SDXL); 1 reproduces "
        "the per-image steps and guidance, N > 1 shares them per batch (docs/dpgen.md)",
    )
    offload: str = option(
        "auto",
        help="diffusers CPU offload: none, model (enable_model_cpu_offload), sequential "
        "(enable_sequential_cpu_offload), or auto: the least that dpgen plan says fits",
        choices=OFFLOAD_MODES,
    )
    random_weights: bool = option(
        False,
        help="real-size pipelines with RANDOM weights from the shipped configs (offline "
        "benchmarks and GPU smoke runs); the build says so in its provenance, card and info",
    )
    vae_tiling: bool = option(
        False,
        help="VAE encode/decode in overlapping tiles (less memory for large sources); it "
        "changes pixels slightly, so it is one of the build's settings",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.pass_size, self.batch_size) < 1:
            raise OptionError(
                f"pass_size and batch_size must be >= 1, got {self.pass_size}, {self.batch_size}"
            )
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
        for name in ("out", "pass_size", "offload"):  # how the work is run, not what it makes
            data.pop(name)
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


def pending_shards(num_shards: int, done: set[int] | dict, rank: int, world_size: int) -> list[int]:
    """This process's share of the shards not yet committed: every ``world_size``-th pending
    shard from the ``rank``-th, so every process gets work however the previous run ended."""
    pending = [i for i in range(num_shards) if i not in done]
    return pending[rank::world_size]


@dataclass
class BuildStats:
    """Counters of one process's run, for the progress bar and the benchmark."""

    images: int = 0
    skipped: int = 0
    patches: int = 0
    pipeline_seconds: float = 0.0
    load_seconds: float = 0.0
    wall_seconds: float = 0.0


@dataclass
class _Shard:
    index: int
    jobs: list[Job]
    prepared: list[PreparedJob] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


class Builder:
    """Runs this process's share of a build (`RoundtripConfig` or `BuildConfig`)."""

    def __init__(self, cfg: RoundtripConfig, state: PartialState | None = None) -> None:
        self.cfg = cfg
        # Without cpu=True, accelerate treats torchrun / `accelerate launch --multi_gpu` ranks on a
        # machine with no GPU as single processes (each would build everything).
        self.state = state or PartialState(cpu=not torch.cuda.is_available())
        self.specs = resolve_generators(cfg.generators)
        self.inpainting = isinstance(cfg, BuildConfig)
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
        # The mask policy per source set, TGIF's semantic rule and its files (read up front).
        self.regions = None
        if self.inpainting:
            self.regions = RegionChooser(
                parse_mask_policy(cfg.mask_policy), cfg.grid, cfg.patch_size, cfg.margin,
                cfg.annotations, cfg.captions, cfg.semantic_rule,
            )  # fmt: skip
        self.planner = JobPlanner(
            self.specs,
            seed=cfg.seed,
            regions=self.regions,
            grid=cfg.grid,
            patch=cfg.patch_size,
            margin=cfg.margin,
            prompts=lambda: load_prompts(cfg.prompts),
        )
        self.stats = BuildStats()

    def make_generator(self, spec: GeneratorSpec) -> Generator:
        """A generator on this process's device with the build's offload setting."""
        cfg = self.cfg
        return Generator(
            spec,
            self.state.device,
            offload=cfg.offload,
            vae_tiling=cfg.vae_tiling,
            random_weights=cfg.random_weights,
        )

    def jobs(self) -> list[Job]:
        """Every job of the build, in build order (`dpgen.jobs.list_jobs`); sources are listed
        and checked here, before any pipeline loads."""
        cfg = self.cfg
        real = list_images(cfg.real, SOURCE_REAL, num_images=cfg.num_images, seed=cfg.seed)
        if not self.inpainting:
            return list_jobs(real, self.specs, None, 0)
        self.regions.check_real(real)
        count = cfg.num_generated if cfg.num_generated is not None else len(real)
        wanted = [
            GeneratedSource(spec.name, location, cfg.generated_field or spec.source_field,
                            spec.source_models, required=bool(cfg.generated_field))
            for spec in self.specs
            if (location := self.generated.get(spec.name))
        ]  # fmt: skip
        listing = list_generated(wanted, count, cfg.seed) if count and wanted else None
        self.source_report = listing.report if listing else []
        if count and len(wanted) < len(self.specs):  # some generator makes its own sources
            load_prompts(cfg.prompts)  # a bad prompt file fails now, not in the first pass
        return list_jobs(real, self.specs, listing.refs if listing else {}, count)

    # -- one pass ------------------------------------------------------------------------
    def _prepare(self, shard: _Shard) -> None:
        """Every decision of the shard's jobs; unusable sources are skipped and recorded."""
        for job in shard.jobs:
            try:
                shard.prepared.append(self.planner.prepare(job))
            except (SourceError, MaskError) as err:
                logger.warning("skipped %s: %s", job.key, err)
                shard.skipped.append(
                    {"key": job.key, "path": job.ref.path if job.ref else "", "reason": str(err)}
                )

    def _rows(self, p: PreparedJob) -> tuple[PatchRows, PatchRows]:
        source = np.asarray(p.image, dtype=np.uint8)
        views = [
            View(n, self.label_names.index(self.planner.specs[n].label), p.views[n])
            for n in p.painters
        ]
        if p.job.source_set == SOURCE_GENERATED:
            return pair_generated(p.job.image_id, source, views[0], p.inside), PatchRows.empty(
                self.cfg.patch_size
            )
        return pair_real(p.job.image_id, source, views, p.inside, p.outside)

    def _commit(self, shard: _Shard) -> None:
        rows = [self._rows(p) for p in shard.prepared]
        records = [image_record(p) for p in shard.prepared]
        tables = {
            PAIRS: rows_table([r[0] for r in rows], self.features[PAIRS]),
            NEGATIVES: rows_table([r[1] for r in rows], self.features[NEGATIVES]),
            IMAGES: to_table({k: [r[k] for r in records] for k in IMAGE_FEATURES}, IMAGE_FEATURES),
        }
        self.stats.images += len(shard.prepared)
        self.stats.skipped += len(shard.skipped)
        self.stats.patches += tables[PAIRS].num_rows + tables[NEGATIVES].num_rows
        entry = {
            "jobs": [j.key for j in shard.jobs],
            "skipped": shard.skipped,
            "process": self.state.process_index,
        }
        commit_shard(self.cfg.out, shard.index, tables, entry)

    def run_pass(self, shards: list[_Shard], bar: tqdm) -> None:
        """Prepare, run every generator over the pass, pair and commit each shard in order."""
        for shard in shards:
            self._prepare(shard)
        runner = GeneratorPass(
            self.specs,
            self.make_generator,
            batch_size=self.cfg.batch_size,
            seed=self.cfg.seed,
            roundtrip=not self.inpainting,
            source_rule=self.planner.source_rule,
            min_side=2 * self.cfg.patch_size,
        )
        start = time.perf_counter()
        runner.run([s.prepared for s in shards])
        seconds = time.perf_counter() - start
        self.stats.pipeline_seconds += runner.pipeline_seconds
        self.stats.load_seconds += runner.load_seconds
        logger.info(
            "pass of %d image(s): %.1f s, of which loading %.1f s (%.0f%%)",
            sum(len(s.jobs) for s in shards), seconds, runner.load_seconds,
            100 * runner.load_seconds / max(seconds, 1e-9),
        )  # fmt: skip
        for shard in shards:
            self._commit(shard)
            bar.update(len(shard.jobs))

    # -- the whole build -------------------------------------------------------------------
    def run(self) -> BuildStats:
        """Run this process's pending shards, then (main process) finalize the directory."""
        cfg, state = self.cfg, self.state
        out = Path(cfg.out)
        jobs = self.jobs()
        num_shards = max(1, math.ceil(len(jobs) / cfg.shard_size))
        self._check_resume(out, len(jobs))
        with state.main_process_first():
            self._resolve_checkpoints()
        done = done_shards(out)
        state.wait_for_everyone()  # every process read the same ledger before anyone commits
        mine = pending_shards(num_shards, done, state.process_index, state.num_processes)
        if state.is_main_process:
            logger.info(
                "%d jobs in %d shards on %d process(es); %d shard(s) already done",
                len(jobs), num_shards, state.num_processes, len(done),
            )  # fmt: skip
        start = time.perf_counter()
        shard_jobs = {i: jobs[i * cfg.shard_size : (i + 1) * cfg.shard_size] for i in mine}
        sizes = {i: len(j) for i, j in shard_jobs.items()}
        with tqdm(
            total=sum(sizes.values()),
            desc=f"dpgen[{state.process_index}]",
            unit="img",
            disable=not mine,
        ) as bar:
            for unit in shard_units(mine, sizes, cfg.pass_size):
                self.run_pass([_Shard(i, shard_jobs[i]) for i in unit], bar)
        self.stats.wall_seconds = time.perf_counter() - start
        state.wait_for_everyone()
        if state.is_main_process:
            self._finalize(out, num_shards)
        state.wait_for_everyone()
        self._check_usable(out, jobs)
        return self.stats

    def _check_usable(self, out: Path, jobs: list[Job]) -> None:
        """Refuse a finished build in which every source was skipped: it holds no image, and
        training on it would fail far from the cause. Checked on every process after the
        build is finalized, so its ``report.json`` (the reasons) is kept; a build with some
        usable image goes on as before.

        Raises:
            InputError: ``LOCATION: no usable image: N skipped (reasons in OUT/report.json)``.
        """
        skipped = {s["key"] for s in skipped_sources(out)}
        if not jobs or any(job.key not in skipped for job in jobs):
            return
        where = ", ".join(dict.fromkeys(self._location(job) for job in jobs))
        raise InputError(
            f"{where}: no usable image: {len(skipped)} skipped (reasons in {out / 'report.json'})"
        )

    def _location(self, job: Job) -> str:
        """Where a job's source comes from, as the user gave it (for messages)."""
        if job.source_set == SOURCE_REAL:
            return self.cfg.real or str(bundled_photos_dir())
        return self.generated.get(job.generator) or f"{job.generator}'s text-to-image pipeline"

    def _resolve_checkpoints(self) -> None:
        """Build the tiny pipelines (and check local folders) before any process loads them:
        run by rank 0 first, as transformers saves nothing on other ranks."""
        if self.cfg.random_weights:
            return
        for spec in self.specs:
            for ref in filter(None, (spec.text2image, spec.inpaint)):
                resolve_checkpoint(ref.checkpoint)

    def _check_resume(self, out: Path, num_jobs: int) -> None:
        settings = {"config": self.cfg.fingerprint(), "jobs": num_jobs}
        path = out / "build.json"
        if path.exists():
            previous = json.loads(path.read_text())
            if previous != settings:
                raise BuildError(
                    f"{out}: built with other settings: {settings_changes(previous, settings)}; use "
                    "another --out or the same settings"
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
        skipped = skipped_sources(out)
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
            "generators": [
                Generator(s, random_weights=self.cfg.random_weights).provenance()
                for s in self.specs
            ],
            "weights": RANDOM_WEIGHTS if self.cfg.random_weights else PRETRAINED_WEIGHTS,
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
