"""Radial power spectra of the four patch types of a dpgen build (paper Fig. 3).

For every generator G of a build, four mean spectra over the high-frequency band (normalised
frequency 0.2-0.5 by default, where the paper shows the types separate):

- real source: untouched patches of real images (the groups G regenerated);
- real regenerated: the same positions after G's full regeneration (outside the mask);
- generated source: patches of G's text-to-image outputs, inside the later mask;
- generated inpainted: the same positions after G's inpainting.

A patch's spectrum is ``|FFT2|^2 / P^2`` of its luminance (ITU-R 601 weights) after the mean is
removed and a 2-D Hann window applied (rescaled so white noise keeps its power), averaged over
annuli of normalised radial frequency ``sqrt(fx^2 + fy^2)`` (cycles per pixel, 0.5 = Nyquist).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from datasets import load_from_disk
from matplotlib.figure import Figure  # no pyplot: no backend or display is ever involved

from dpgen.errors import InputError
from dpgen.options import OptionError, Options, option
from dpgen.schema import PAIRS, SOURCE_GENERATED, SOURCE_REAL, SOURCE_VIEW, patch_array

logger = logging.getLogger(__name__)

PATCH_TYPES = ("real source", "real regenerated", "generated source", "generated inpainted")
FIGURE_FILE = "spectra.png"
CSV_FILE = "spectra.csv"
_LUMA = (0.299, 0.587, 0.114)


@dataclass(kw_only=True)
class SpectraConfig(Options):
    """``dpeval spectra``: the build, the output folder and the analysis settings."""

    data: str = option(help="folder written by dpgen build")
    out: str = option(help="folder for spectra.png and spectra.csv")
    band: tuple[float, float] = option(
        (0.2, 0.5), help="normalised radial frequency band LO HI (0.5 = Nyquist)", metavar="F"
    )
    bins: int = option(12, help="annuli the band is split into")
    max_patches: int = option(4000, help="patches sampled per generator and patch type at most")
    seed: int = option(0, help="seed of the patch sampling")
    window: bool = option(True, help="apply a 2-D Hann window (suppresses border leakage)")
    batch_size: int = option(2048, help="patches per FFT batch")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_band(self.band, self.bins)


def check_band(band: tuple[float, float], bins: int) -> None:
    """Raise `dpgen.options.OptionError` unless ``0 < lo < hi <= 0.5`` and ``bins >= 2``."""
    lo, hi = band
    if not 0 < lo < hi <= 0.5:
        raise OptionError(f"band must satisfy 0 < lo < hi <= 0.5, got {band}")
    if bins < 2:
        raise OptionError(f"bins must be at least 2, got {bins}")


@dataclass
class Curve:
    """A mean radial spectrum.

    Attributes:
        generator: the generator name (a panel of the figure).
        patch_type: one of `PATCH_TYPES`.
        frequency: (bins,) mean normalised radial frequency of each annulus.
        power: (bins,) mean power in each annulus.
        n_patches: patches averaged.
    """

    generator: str
    patch_type: str
    frequency: np.ndarray
    power: np.ndarray
    n_patches: int


def radial_spectrum(
    images: np.ndarray | torch.Tensor,
    band: tuple[float, float] = (0.2, 0.5),
    bins: int = 12,
    window: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean radial power spectrum of a batch over ``band``.

    Args:
        images: (N, 3, H, W) RGB (channels first, as dpgen stores patches) or (N, H, W) gray,
            any numeric dtype, square or not.
        band: normalised radial frequency range ``(lo, hi)``, within (0, 0.5].
        bins: annuli the band is split into.
        window: apply a 2-D Hann window.

    Returns:
        frequency (bins,) and power (bins,): the mean radial frequency and the mean power of
        each annulus, averaged over the batch.

    Raises:
        ValueError: for another shape, or a band too narrow to hold a frequency in every bin.
    """
    check_band(band, bins)
    if isinstance(images, np.ndarray) and not images.flags.writeable:  # a memory-mapped view
        images = images.copy()
    x = torch.as_tensor(images).double()
    if x.ndim == 4 and x.shape[1] == 3:
        x = torch.einsum("nchw,c->nhw", x, torch.tensor(_LUMA, dtype=torch.float64))
    elif x.ndim != 3:
        raise ValueError(f"expected (N, 3, H, W) or (N, H, W), got {tuple(x.shape)}")
    _, h, w = x.shape
    x = x - x.mean(dim=(1, 2), keepdim=True)
    if window:
        win = torch.outer(
            torch.hann_window(h, periodic=False, dtype=torch.float64),
            torch.hann_window(w, periodic=False, dtype=torch.float64),
        )
        x = x * (win / win.pow(2).mean().sqrt())
    power = torch.fft.fft2(x).abs().pow(2).mean(dim=0) / (h * w)  # (H, W)
    fy, fx = torch.fft.fftfreq(h, dtype=torch.float64), torch.fft.fftfreq(w, dtype=torch.float64)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    edges = torch.linspace(*band, bins + 1, dtype=torch.float64)
    which = torch.bucketize(radius, edges, right=True) - 1  # bin index; band edges inclusive low
    which[radius == edges[-1]] = bins - 1
    inside = (which >= 0) & (which < bins)
    counts = torch.bincount(which[inside], minlength=bins)
    if (counts == 0).any():
        raise ValueError(
            f"{h}x{w} images have no frequency in some of {bins} bins of {band}; "
            "use fewer bins or larger patches"
        )
    freq = torch.bincount(which[inside], radius[inside], minlength=bins) / counts
    mean = torch.bincount(which[inside], power[inside], minlength=bins) / counts
    return freq.numpy(), mean.numpy()


def power_law_slope(frequency: np.ndarray, power: np.ndarray) -> float:
    """Slope of ``log power`` against ``log frequency`` (least squares): -beta of ``f^-beta``."""
    return float(np.polyfit(np.log(frequency), np.log(power), 1)[0])


def _patch_type_indices(table: pa.Table) -> dict[str, dict[str, np.ndarray]]:
    """Row indices of ``pairs`` per generator name and `PATCH_TYPES` (see the module docstring)."""
    source_set = np.asarray(table.column("source_set").to_pylist())
    view = np.asarray(table.column("view").to_pylist())
    group = np.asarray(table.column("group_id").to_pylist(), dtype=object)
    is_source = view == SOURCE_VIEW
    # Who painted each group: the view of its non-source rows (one generator per generated
    # group; K per real group).
    painters: dict[str, set[str]] = {}
    for g, v in zip(group[~is_source], view[~is_source], strict=True):
        painters.setdefault(g, set()).add(v)
    names = list(dict.fromkeys(view[~is_source].tolist()))  # in build order
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        in_group = np.array([name in painters.get(g, ()) for g in group])
        real, gen = source_set == SOURCE_REAL, source_set == SOURCE_GENERATED
        out[name] = {
            "real source": np.flatnonzero(real & is_source & in_group),
            "real regenerated": np.flatnonzero(real & (view == name)),
            "generated source": np.flatnonzero(gen & is_source & in_group),
            "generated inpainted": np.flatnonzero(gen & (view == name)),
        }
    return out


def compute_spectra(config: SpectraConfig) -> list[Curve]:
    """Mean spectra of the four patch types per generator of the build at ``config.data``.

    A (generator, type) with no patches is left out (e.g. a build without generated images).

    Raises:
        ValueError: naming the folder when it is no dpgen build or has no generator views.
    """
    data = config.data
    try:
        build = load_from_disk(str(data))
    except (FileNotFoundError, ValueError) as err:
        raise InputError(f"{data}: not a dpgen build: {err}") from None
    if PAIRS not in build:
        raise InputError(f"{data}: no split {PAIRS!r} (found {list(build)}); run dpgen build")
    table = build[PAIRS].data
    indices = _patch_type_indices(table)
    if not indices:
        raise InputError(f"{data}: the build has no generator views")
    rng = np.random.default_rng(config.seed)
    curves = []
    for name, per_type in indices.items():
        for patch_type in PATCH_TYPES:
            idx = per_type[patch_type]
            if len(idx) == 0:
                continue
            if len(idx) > config.max_patches:
                idx = np.sort(rng.choice(idx, config.max_patches, replace=False))
            weighted = None
            for start in range(0, len(idx), config.batch_size):
                chunk = idx[start : start + config.batch_size]
                patches = patch_array(table.fast_gather(chunk)["patch"])
                freq, power = radial_spectrum(patches, config.band, config.bins, config.window)
                weighted = power * len(chunk) if weighted is None else weighted + power * len(chunk)
            curves.append(Curve(name, patch_type, freq, weighted / len(idx), len(idx)))
            logger.info("%s / %s: %d patches", name, patch_type, len(idx))
    return curves


def make_figure(curves: list[Curve]) -> Figure:
    """One panel per generator with its patch types' spectra (log power), like paper Fig. 3."""
    names = list(dict.fromkeys(c.generator for c in curves))
    fig = Figure(figsize=(4 * len(names), 3.4), layout="tight")
    axes = fig.subplots(1, len(names), squeeze=False, sharey=True)
    styles = dict(zip(PATCH_TYPES, ("C0-", "C0--", "C3-", "C3--"), strict=True))
    for ax, name in zip(axes[0], names, strict=True):
        for c in (c for c in curves if c.generator == name):
            ax.semilogy(c.frequency, c.power, styles[c.patch_type], label=c.patch_type)
        ax.set_title(name)
        ax.set_xlabel("normalised frequency")
        ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].set_ylabel("mean power")
    axes[0, -1].legend(fontsize="small")
    return fig


def write_spectra(curves: list[Curve], out: str | Path) -> tuple[Path, Path]:
    """Write `FIGURE_FILE` (PNG) and `CSV_FILE` (one row per curve point) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig = make_figure(curves)
    png = out / FIGURE_FILE
    fig.savefig(png, dpi=120)
    path = out / CSV_FILE
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["generator", "patch_type", "frequency", "power", "n_patches"])
        for c in curves:
            for fr, pw in zip(c.frequency, c.power, strict=True):
                writer.writerow([c.generator, c.patch_type, f"{fr:.6f}", f"{pw:.6e}", c.n_patches])
    return png, path
