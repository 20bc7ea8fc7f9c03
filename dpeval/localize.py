"""`dpeval localize`: a localization map for every image, with a trained localizer.

For each input image (JPEG, PNG, WebP, TIFF, BMP; EXIF orientation applied; grayscale, CMYK,
16-bit, float and transparent images converted to 8-bit RGB as `dpgen.sources.load_image` does,
the conversion logged) the localizer (`dpeval.tgif.lite_baseline.LiteBaseline`, e.g. the
``best/`` folder of `dpeval tgif`) predicts the probability that each pixel was inpainted, at
the image's full resolution. Images with a side longer than ``--max-side`` are cut into
overlapping tiles whose maps are blended without seams (`dpeval.tiling`). Tiles of the same
shape (all tiles of one image, and equal-size images in a row) go through the model in batches
of ``--batch-size`` (default 4 on a GPU, 1 on the CPU where batching gains nothing). A localizer
with DiffIML's diffusion decoder samples its maps: each tile's noise is seeded by the image's key
and the tile's position (`tile_generator`), so maps are reproducible whatever the batching and
however often the run was resumed.

Outputs in ``--out`` for an image with key K (its file stem, or its path inside a folder input
without the suffix):

- ``maps/K.png``: the map, 16-bit grayscale (0..65535 = 0..1; `dpeval.maps.write_map`);
- ``masks/K.png``: ``map > --threshold``, 8-bit 0/255;
- ``overlays/K.png``: the map's colours over the image (`dpeval.maps.overlay`);
- one line of ``results.jsonl``: path, key, width, height, ``fraction_over_threshold``,
  ``score`` (the image-level score: the mean of the top 1 % of the map's values, in [0, 1]; not
  calibrated), the output files, the number of tiles and the conversion applied.

Resumable: images with a line in ``results.jsonl`` are skipped, so a killed run continues where
it stopped (``run.json`` records the settings; other settings need another ``--out``). A file
that cannot be decoded is logged, listed in ``failures.jsonl`` and skipped; the others go on.
A run in which no input could be read (none localized now or before) ends with an `InputError`
(exit status 2) after writing ``failures.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from dpeval import maps
from dpeval.tgif.card import load_localizer
from dpeval.tgif.lite_baseline import LiteBaseline
from dpeval.tiling import Blender, Tile, tiles
from dpgen.checkpoints import atomic_write
from dpgen.errors import InputError
from dpgen.options import OptionError, Options, option
from dpgen.schema import SOURCE_REAL
from dpgen.sources import IMAGE_EXTENSIONS, SourceRef, list_images, load_image

logger = logging.getLogger(__name__)

RESULTS = "results.jsonl"
FAILURES = "failures.jsonl"
SETTINGS = "run.json"
SUBFOLDERS = {"map": "maps", "mask": "masks", "overlay": "overlays"}
#: Tiles per forward pass on a GPU by default (a 1024-px MiT-B2 tile needs ~1.3 GB of activations).
GPU_BATCH = 4
#: The image-level score is the mean of this fraction of the map's highest values.
SCORE_TOP_FRACTION = 0.01


@dataclass(kw_only=True)
class LocalizeConfig(Options):
    """``dpeval localize``: model, inputs, output folder, threshold, tiling, batching."""

    model: str = option(help="localizer folder or Hub id (dpeval tgif's OUTPUT/best)")
    inputs: list[str] = option(
        help="image files or folders (searched recursively)", positional=True
    )
    out: str = option(help="output folder (maps/, masks/, overlays/, results.jsonl)")
    threshold: float = option(0.5, help="binary masks: map > threshold")
    max_side: int = option(1024, help="longer image sides are processed in tiles of this side")
    tile_overlap: int = option(128, help="pixels shared by neighbouring tiles (blended)")
    batch_size: int = option(0, help="tiles per forward pass (0: 4 on a GPU, 1 on the CPU)")
    device: str = option("", help="torch device (default: cuda when available, else cpu)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.threshold < 1.0:
            raise OptionError(f"threshold: {self.threshold} is not in [0, 1)")
        if self.max_side < 32:
            raise OptionError(f"max_side: {self.max_side} is below 32 pixels")
        if not 0 <= self.tile_overlap <= self.max_side // 2:
            raise OptionError(
                f"tile_overlap: {self.tile_overlap} is not in [0, max_side / 2 = "
                f"{self.max_side // 2}]"
            )
        if self.batch_size < 0:
            raise OptionError(f"batch_size: {self.batch_size} is negative")


@dataclass
class Summary:
    """What one run did: images found, done before, localized now, failed (path: reason)."""

    out: Path
    found: int
    done_before: int
    localized: int = 0
    failed: list[dict] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"localized {self.localized} image(s) ({self.done_before} done before, "
            f"{len(self.failed)} failed, {self.found} found) -> {self.out / RESULTS}"
        )


# --------------------------------------------------------------------------- inputs


def list_inputs(inputs: Iterable[str]) -> list[tuple[str, Path]]:
    """``(key, path)`` of every input image, in order (folders recursively, sorted).

    Raises:
        InputError: a missing input, a file that is not an image, an empty folder, or two
            images that would write the same outputs (same key).
    """
    found: dict[str, Path] = {}
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            refs = list_images(str(path), SOURCE_REAL)
            entries = [(r.image_id, Path(r.path)) for r in refs]
        elif path.is_file():
            if not path.name.lower().endswith(IMAGE_EXTENSIONS):
                raise InputError(f"{path}: not an image file ({', '.join(IMAGE_EXTENSIONS)})")
            entries = [(path.stem, path)]
        else:
            raise InputError(f"{path}: no such file or folder")
        for key, file in entries:
            if key in found and found[key] != file:
                raise InputError(
                    f"{file}: writes the same outputs ({key}) as {found[key]}; rename one or "
                    "localize them into different --out folders"
                )
            found[key] = file
    return list(found.items())


@dataclass
class Decoded:
    """An input image decoded to RGB, and the conversion that took (None for plain RGB)."""

    key: str
    path: Path
    image: np.ndarray  # (H, W, 3) uint8
    conversion: str | None


def read_image(key: str, path: Path) -> Decoded:
    """Decode an image as `dpgen.sources.load_image` does, naming the conversion applied.

    Raises:
        dpgen.sources.SourceError: an unreadable, corrupt or truncated file.
    """
    rgb, _ = load_image(SourceRef(key, str(path), SOURCE_REAL))
    with Image.open(path) as header:
        mode, orientation = header.mode, header.getexif().get(0x0112, 1)
    notes = []
    if mode != "RGB":
        alpha = " (transparency composited on black)" if "A" in mode or mode == "P" else ""
        notes.append(f"{mode} -> RGB{alpha}")
    if orientation not in (1, None):
        notes.append(f"EXIF orientation {orientation} applied")
    return Decoded(key, path, np.asarray(rgb), "; ".join(notes) or None)


# --------------------------------------------------------------------------- output folder


class OutputFolder:
    """``--out``: the per-image files, ``results.jsonl``, ``failures.jsonl`` and ``run.json``."""

    def __init__(self, root: str | Path, settings: dict) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root}: --out exists and is not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        self._check_settings(settings)
        self.done = self._read_results()

    def _check_settings(self, settings: dict) -> None:
        path = self.root / SETTINGS
        if path.is_file():
            before = json.loads(path.read_text())
            changed = sorted(k for k in settings if before.get(k) != settings[k])
            if changed:
                raise InputError(
                    f"{self.root}: made with other settings ({', '.join(changed)}: "
                    f"{[before.get(k) for k in changed]}); use another --out"
                )
        atomic_write(path, json.dumps(settings, indent=1))

    def _read_results(self) -> dict[str, dict]:
        """Done images by key; a line cut by a kill is dropped (the file is rewritten)."""
        path = self.root / RESULTS
        if not path.is_file():
            return {}
        done, kept = {}, []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[record["key"]] = record
            kept.append(line)
        atomic_write(path, "".join(line + "\n" for line in kept))
        return done

    def file(self, kind: str, key: str) -> Path:
        path = self.root / SUBFOLDERS[kind] / f"{key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def append(self, record: dict) -> None:
        with open(self.root / RESULTS, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        self.done[record["key"]] = record

    def write_failures(self, failures: list[dict]) -> None:
        atomic_write(self.root / FAILURES, "".join(json.dumps(f) + "\n" for f in failures))


# --------------------------------------------------------------------------- inference


def tile_generator(key: str, tile: Tile) -> torch.Generator:
    """The CPU generator of a diffusion decoder's noise for one tile of the image ``key``."""
    digest = hashlib.sha256(f"{key}\0{tile.y}\0{tile.x}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


@torch.no_grad()
def predict_tiles(
    model: LiteBaseline,
    pixels: list[np.ndarray],
    device: str,
    generators: list[torch.Generator] | None = None,
) -> np.ndarray:
    """Maps of same-shape crops: n x (h, w, 3) uint8 -> (n, h, w) float32 in [0, 1]
    (`LiteBaseline.probabilities`; ``generators``, one per crop, seed a diffusion decoder).

    Crops with a side below the model's `LiteBaseline.min_side` are padded by repeating their
    edge pixels, and the padding is cut from the maps.
    """
    batch = np.stack(pixels)
    h, w = batch.shape[1:3]
    side = model.min_side
    if h < side or w < side:
        batch = np.pad(
            batch, ((0, 0), (0, max(0, side - h)), (0, max(0, side - w)), (0, 0)), "edge"
        )
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(device)
    return model.probabilities(x, generators)[:, 0].float().cpu().numpy()[:, :h, :w]


@dataclass
class _InFlight:
    """An image whose tiles are being predicted."""

    item: Decoded
    blender: Blender
    n_tiles: int
    remaining: int

    def add(self, tile: Tile, prob: np.ndarray) -> bool:
        """Blend in one tile's map; True when it was the last one."""
        self.blender.add(tile, prob)
        self.remaining -= 1
        return self.remaining == 0


@dataclass
class _Job:
    state: _InFlight
    tile: Tile

    @property
    def pixels(self) -> np.ndarray:
        return self.tile.crop(self.state.item.image)


def _jobs(items: Iterable[Decoded], max_side: int, overlap: int) -> Iterator[_Job]:
    for item in items:
        h, w = item.image.shape[:2]
        boxes = tiles(h, w, max_side, overlap)
        state = _InFlight(item, Blender(h, w, overlap), len(boxes), len(boxes))
        yield from (_Job(state, box) for box in boxes)


def _batches(jobs: Iterable[_Job], batch_size: int) -> Iterator[list[_Job]]:
    """Consecutive jobs of one tile shape, at most ``batch_size`` at a time."""
    batch: list[_Job] = []
    for job in jobs:
        if batch and (len(batch) == batch_size or batch[0].pixels.shape != job.pixels.shape):
            yield batch
            batch = []
        batch.append(job)
    if batch:
        yield batch


def image_score(prob: np.ndarray) -> float:
    """The image-level score: mean of the top `SCORE_TOP_FRACTION` of the map's values."""
    values = prob.ravel()
    k = max(1, math.ceil(SCORE_TOP_FRACTION * values.size))
    return float(np.partition(values, values.size - k)[values.size - k :].mean())


# --------------------------------------------------------------------------- the run


def localize(config: LocalizeConfig) -> Summary:
    """Localize every input image not done yet (see the module docstring).

    Raises:
        InputError: a bad model, input or output folder, before any image is processed; or,
            at the end, no input could be read (every one is in ``failures.jsonl``).
    """
    items = list_inputs(config.inputs)
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_localizer(config.model, device)
    model_spec = str(Path(config.model).resolve()) if Path(config.model).is_dir() else config.model
    settings = {"model": model_spec, "threshold": config.threshold, "max_side": config.max_side,
                "tile_overlap": config.tile_overlap}  # fmt: skip
    out = OutputFolder(config.out, settings)
    todo = [(k, p) for k, p in items if k not in out.done]
    summary = Summary(out.root, found=len(items), done_before=len(items) - len(todo))
    logger.info("localize: %d image(s), %d to do, on %s", len(items), len(todo), device)
    progress = tqdm(total=len(todo), desc="localize", unit="image")
    decoded = _decode_all(todo, summary, progress)
    batch_size = config.batch_size or (GPU_BATCH if device.startswith("cuda") else 1)
    for batch in _batches(_jobs(decoded, config.max_side, config.tile_overlap), batch_size):
        generators = (
            [tile_generator(job.state.item.key, job.tile) for job in batch]
            if model.sampling
            else None
        )
        probs = predict_tiles(model, [job.pixels for job in batch], device, generators)
        for job, prob in zip(batch, probs, strict=True):
            if job.state.add(job.tile, prob):  # the image's last tile
                _finish(job.state, out, config.threshold)
                summary.localized += 1
                progress.update(1)
    progress.close()
    out.write_failures(summary.failed)
    if summary.failed and not summary.localized and not summary.done_before:
        raise InputError(
            f"no input could be read: {len(summary.failed)} failed (see {out.root / FAILURES})"
        )
    return summary


def _decode_all(
    todo: list[tuple[str, Path]], summary: Summary, progress: tqdm
) -> Iterator[Decoded]:
    """Decoded images in order; an undecodable one is recorded in ``summary`` and skipped."""
    for key, path in todo:
        try:
            item = read_image(key, path)
        except InputError as err:
            logger.warning("skipped %s", err)
            summary.failed.append({"path": str(path), "key": key, "error": str(err)})
            progress.update(1)
            continue
        if item.conversion:
            logger.info("%s: %s", path, item.conversion)
        yield item


def _finish(state: _InFlight, out: OutputFolder, threshold: float) -> None:
    """Write an image's map, mask and overlay, then its results line."""
    item, prob = state.item, state.blender.result()
    files = {kind: out.file(kind, item.key) for kind in SUBFOLDERS}
    maps.write_map(files["map"], prob)
    maps.write_mask(files["mask"], prob, threshold)
    maps.write_overlay(files["overlay"], item.image, prob)
    h, w = prob.shape
    out.append({
        "path": str(item.path), "key": item.key, "width": w, "height": h,
        "fraction_over_threshold": float(np.count_nonzero(prob > threshold) / prob.size),
        "score": image_score(prob),
        **{kind: str(p.relative_to(out.root)) for kind, p in files.items()},
        "tiles": state.n_tiles,
        "conversion": item.conversion,
    })  # fmt: skip
