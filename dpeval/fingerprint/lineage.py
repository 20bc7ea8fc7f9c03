"""``dpeval lineage``: which generators share a fingerprint (paper Sec. 5, model lineage).

Given fingerprints F_1..F_k (each trained on one generator vs real) and held-out images of
generators G_1..G_m plus held-out real images:

- cross-detection (the paper's lineage evidence: SD 1.4's fingerprint detects MidJourney):
  ``detection_rate[i][j]``, the share of G_j's images that F_i labels generated;
  ``real_false_positive[i]``, the share of real images it labels generated; and
  ``accuracy[i][j] = (detection_rate[i][j] + 1 - real_false_positive[i]) / 2``, F_i's balanced
  accuracy on G_j's images against the real ones;
- ``ncc[i][j]``: the normalised cross-correlation of the fingerprints at zero displacement
  (Pearson's coefficient over every value; centre crops of one size, so the generators'
  sampling grids line up; fingerprints of different sizes are compared on their common centre
  crop);
- two hierarchical clusterings of the fingerprints (SciPy, average linkage), drawn side by side
  in ``dendrogram.png``: on the cross-detection profiles (each fingerprint's row of
  ``detection_rate`` with its real false-positive rate appended; distance: root-mean-square
  difference, in [0, 1]) and on ``1 - ncc``. The first is the one to read: the fingerprint
  itself carries a component of the deep image prior (the fixed input z and the U-Net's
  initialisation, both drawn from ``--seed``) which dominates NCC in short runs, so NCC only
  relates fingerprints trained with the same seed (docs/fingerprint.md shows both).

Outputs in ``--out``: ``detection_rate.csv``, ``accuracy.csv``, ``ncc.csv``, ``lineage.json``
(every matrix, both linkages, the image counts), ``dendrogram.png``, ``matrices.png`` and
``fingerprints.png`` (each fingerprint and its spectrum).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import pdist, squareform

from dpgen.errors import InputError

from . import figures
from .config import LineageConfig
from .data import ImageSet, read_set
from .detect import default_device, is_generated, load_fingerprint, score

logger = logging.getLogger(__name__)

METHOD = "average"


@dataclass
class LineageResult:
    """Every matrix of a lineage run (module docstring); rows are fingerprints."""

    fingerprints: list[str]
    image_sets: list[str]
    detection_rate: list[list[float]]
    real_false_positive: list[float]
    accuracy: list[list[float]]
    ncc: list[list[float]]
    linkage_detection: list[list[float]]
    linkage_ncc: list[list[float]]
    counts: dict[str, int]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def profiles(self) -> np.ndarray:
        """(k, m + 1): each fingerprint's detection rates, its real false-positive rate last."""
        return np.column_stack([self.detection_rate, self.real_false_positive])

    def to_markdown(self) -> str:
        """The matrices as Markdown tables (percentages for rates, plain for NCC)."""
        f, sets = self.fingerprints, self.image_sets
        return "\n\n".join(
            [
                _table("labelled generated (%)", f, [*sets, "real"], self.profiles(), 100, ".1f"),
                _table("balanced accuracy vs real (%)", f, sets, self.accuracy, 100, ".1f"),
                _table("fingerprint NCC", f, f, self.ncc, 1, ".3f"),
            ]
        )


def _table(title: str, rows, cols, matrix, factor: float, fmt: str) -> str:
    lines = [f"| {title} | {' | '.join(cols)} |", "|---" * (len(cols) + 1) + "|"]
    for name, row in zip(rows, matrix, strict=True):
        lines.append(f"| {name} | {' | '.join(format(v * factor, fmt) for v in row)} |")
    return "\n".join(lines)


def ncc_matrix(fingerprints: Sequence[np.ndarray]) -> np.ndarray:
    """Pearson correlation of every pair of (C, S, S) fingerprints on their common centre crop.

    Raises:
        InputError: fingerprints with different channel counts (different residuals).
    """
    if len({f.shape[0] for f in fingerprints}) > 1:
        raise InputError("--fingerprints: their residuals have different channel counts")
    side = min(f.shape[-1] for f in fingerprints)
    flat = []
    for f in fingerprints:
        top = (f.shape[-1] - side) // 2
        flat.append(f[:, top : top + side, top : top + side].ravel())
    return np.corrcoef(np.stack(flat))


def cluster_profiles(profiles: np.ndarray) -> np.ndarray:
    """Average linkage of the RMS difference between rows of ``profiles`` (k, n)."""
    return linkage(pdist(profiles) / np.sqrt(profiles.shape[1]), method=METHOD)


def cluster_ncc(ncc: np.ndarray) -> np.ndarray:
    """Average linkage of the distance 1 - ncc."""
    distance = np.clip(1.0 - (ncc + ncc.T) / 2, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    return linkage(squareform(distance, checks=False), method=METHOD)


def _names(paths: Sequence[str]) -> list[str]:
    names = [Path(p).resolve().name for p in paths]
    if len(set(names)) != len(names):
        raise InputError(f"--fingerprints: two folders share a name ({names}); rename one")
    return names


def _rates(model, residual, sets: dict[str, ImageSet], config, device) -> dict[str, float]:
    out = {}
    for name, image_set in sets.items():
        rhos = score(model, residual, image_set.pixels, config.batch_size, device)
        out[name] = float(np.mean(is_generated(model, rhos)))
    return out


def run_lineage(config: LineageConfig) -> LineageResult:
    """Compute the matrices and write every output file (module docstring).

    Raises:
        InputError: no --images, a bad fingerprint folder or image input, before any scoring.
    """
    if not config.images:
        raise InputError("--images: give at least one NAME=DIR of held-out generated images")
    device = default_device(config.device)
    names = _names(config.fingerprints)
    loaded = [load_fingerprint(path, device) for path in config.fingerprints]
    fingerprints = [model.fingerprint.cpu().numpy() for model, _ in loaded]
    ncc = ncc_matrix(fingerprints)
    specs = {"real": config.real, **config.images}
    sets_by_size = {
        size: {name: read_set(spec, size) for name, spec in specs.items()}
        for size in sorted({model.size for model, _ in loaded})
    }
    rates = [
        _rates(model, residual, sets_by_size[model.size], config, device)
        for model, residual in loaded
    ]
    sets = list(config.images)
    detection = np.array([[r[n] for n in sets] for r in rates])
    fpr = np.array([r["real"] for r in rates])
    result = LineageResult(
        fingerprints=names,
        image_sets=sets,
        detection_rate=detection.tolist(),
        real_false_positive=fpr.tolist(),
        accuracy=((detection + 1.0 - fpr[:, None]) / 2.0).tolist(),
        ncc=ncc.tolist(),
        linkage_detection=[],
        linkage_ncc=[],
        counts={n: len(s) for n, s in next(iter(sets_by_size.values())).items()},
    )
    if len(names) > 1:
        result.linkage_detection = cluster_profiles(result.profiles()).tolist()
        result.linkage_ncc = cluster_ncc(ncc).tolist()
    write_outputs(result, dict(zip(names, fingerprints, strict=True)), Path(config.out))
    return result


def _write_csv(path: Path, matrix, rows: list[str], cols: list[str]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["fingerprint", *cols])
        for name, row in zip(rows, matrix, strict=True):
            writer.writerow([name, *(f"{v:.6f}" for v in row)])


def write_outputs(result: LineageResult, fingerprints: dict[str, np.ndarray], out: Path) -> None:
    """CSV + JSON of every matrix and the three figures, into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    names, sets = result.fingerprints, result.image_sets
    _write_csv(out / "detection_rate.csv", result.profiles(), names, [*sets, "real"])
    _write_csv(out / "accuracy.csv", result.accuracy, names, sets)
    _write_csv(out / "ncc.csv", result.ncc, names, names)
    (out / "lineage.json").write_text(result.to_json())
    panels = [
        ("share labelled generated", result.profiles(), names, [*sets, "real"]),
        ("balanced accuracy vs real", np.array(result.accuracy), names, sets),
        ("fingerprint NCC", np.array(result.ncc), names, names),
    ]
    figures.matrices_figure(panels, out / "matrices.png")
    if len(names) > 1:
        trees = [
            ("cross-detection profiles (RMS difference)", np.array(result.linkage_detection)),
            ("fingerprint NCC (1 - NCC)", np.array(result.linkage_ncc)),
        ]
        figures.dendrogram_figure(trees, names, out / "dendrogram.png")
    figures.fingerprints_figure(fingerprints, out / "fingerprints.png")
