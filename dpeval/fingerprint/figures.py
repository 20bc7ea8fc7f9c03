"""Pictures of fingerprints and of their lineage: PNG files drawn without pyplot.

- `fingerprint_rgb`: the fingerprint as an image, each channel min-max stretched to 0..255
  (its raw values are in ``fingerprint.npy``); a fingerprint of C != 3 channels is shown as the
  grey mean of its channels.
- `spectrum_db`: 20 log10 of the FFT magnitude, averaged over channels after each channel's
  mean is removed, zero frequency in the centre (the authors' ``produce_spectrum`` up to the
  log base): periodic traces of upsampling layers show as peaks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no backend or display involved
from PIL import Image
from scipy.cluster.hierarchy import dendrogram

EPS = 1e-12


def fingerprint_rgb(fingerprint: np.ndarray) -> np.ndarray:
    """(C, S, S) float -> (S, S, 3) uint8, each channel stretched to its own min..max."""
    f = fingerprint if fingerprint.shape[0] == 3 else fingerprint.mean(axis=0, keepdims=True)
    lo = f.min(axis=(1, 2), keepdims=True)
    hi = f.max(axis=(1, 2), keepdims=True)
    scaled = (f - lo) / np.maximum(hi - lo, EPS)
    rgb = np.repeat(scaled, 3 // len(scaled), axis=0).transpose(1, 2, 0)
    return np.round(rgb * 255).astype(np.uint8)


def spectrum_db(fingerprint: np.ndarray) -> np.ndarray:
    """(C, S, S) -> (S, S) magnitude spectrum in dB, centred (module docstring)."""
    f = fingerprint - fingerprint.mean(axis=(1, 2), keepdims=True)
    magnitude = np.abs(np.fft.fft2(f, norm="forward")).mean(axis=0)
    return 20 * np.log10(np.fft.fftshift(magnitude) + EPS)


def _spectrum_panel(fig: Figure, ax, fingerprint: np.ndarray, title: str) -> None:
    size = fingerprint.shape[-1]
    extent = (-0.5, 0.5 - 1 / size, 0.5 - 1 / size, -0.5)  # cycles per pixel
    im = ax.imshow(spectrum_db(fingerprint), cmap="magma", extent=extent)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("cycles / px", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="dB")


def write_fingerprint_files(fingerprint: np.ndarray, folder: Path, title: str) -> list[Path]:
    """``fingerprint.npy`` (S, S, C float32), ``fingerprint.png`` and ``spectrum.png``."""
    folder = Path(folder)
    np.save(folder / "fingerprint.npy", fingerprint.transpose(1, 2, 0).astype(np.float32))
    Image.fromarray(fingerprint_rgb(fingerprint)).save(folder / "fingerprint.png")
    fig = Figure(figsize=(4.2, 3.6))
    _spectrum_panel(fig, fig.add_subplot(1, 1, 1), fingerprint, f"{title}: |FFT| of F")
    fig.tight_layout()
    fig.savefig(folder / "spectrum.png", dpi=100)
    return [folder / n for n in ("fingerprint.npy", "fingerprint.png", "spectrum.png")]


def fingerprints_figure(fingerprints: Mapping[str, np.ndarray], path: Path) -> Path:
    """One column per fingerprint: the fingerprint (top) and its spectrum (bottom)."""
    n = len(fingerprints)
    fig = Figure(figsize=(3.4 * n, 6.4))
    for i, (name, f) in enumerate(fingerprints.items()):
        ax = fig.add_subplot(2, n, i + 1)
        ax.imshow(fingerprint_rgb(f), interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        _spectrum_panel(fig, fig.add_subplot(2, n, n + i + 1), f, "spectrum")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)


def matrices_figure(
    panels: Sequence[tuple[str, np.ndarray, Sequence[str], Sequence[str]]], path: Path
) -> Path:
    """Heat maps with their values: (title, matrix, row names, column names) per panel."""
    fig = Figure(figsize=(4.6 * len(panels), 4.2))
    for i, (title, matrix, rows, cols) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        lo = min(0.0, float(np.nanmin(matrix)))
        im = ax.imshow(matrix, cmap="viridis", vmin=lo, vmax=1.0)
        ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        for (r, c), value in np.ndenumerate(matrix):
            dark = value < (lo + 1.0) / 2  # white text on the dark half of the colour map
            ax.text(
                c,
                r,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="w" if dark else "k",
            )
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)


def dendrogram_figure(
    trees: Sequence[tuple[str, np.ndarray]], names: Sequence[str], path: Path
) -> Path:
    """One SciPy dendrogram per (title, linkage), side by side, leaves labelled by ``names``."""
    fig = Figure(figsize=(max(4.0, 1.1 * len(names)) * len(trees), 3.8))
    for i, (title, tree) in enumerate(trees):
        ax = fig.add_subplot(1, len(trees), i + 1)
        dendrogram(tree, labels=list(names), ax=ax, color_threshold=0)
        ax.set_ylabel("distance", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)
