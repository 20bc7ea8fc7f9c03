"""The fitted attributor: the head, its feature spec, the densities, saved as one folder.

Folder layout (written by `Attributor.save`, read by `Attributor.load`)::

    A/config.json, A/model.safetensors   the PrototypeHead (save_pretrained, Hub-style)
    A/backbone/                          the frozen DiffusionPrint (gap/projector features)
    A/attributor.json                    classes, feature spec, scorer settings, bandwidth,
                                         calibration statistics
    A/density.safetensors                the known patches' embeddings z, classes, folds and
                                         pixel digests (and the digests of the head's training
                                         patches): the KDE's parameters, from which the
                                         Mahalanobis, GMM and KDE scorers are refitted on load
                                         (deterministic; the calibration is checked equal)

`Attributor.score` maps features to every score from pixels-derived inputs only (the features
and the patches' digests), never from a label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from dpeval.attribute import latent
from dpeval.attribute.density import ClassDensity, OutOfFold, energy, kde_fitter, mahalanobis_fitter
from dpeval.attribute.embed import LATENT_PREFIX, BackboneEmbedder, Embedder
from dpeval.attribute.prototype import PrototypeHead
from dpgen.errors import InputError
from dptrain.model import DiffusionPrint

ATTRIBUTOR_FILE = "attributor.json"
DENSITY_FILE = "density.safetensors"
BACKBONE_DIR = "backbone"
#: Open-set scores, in report order.
OPEN_SCORES = ("kde", "mahalanobis", "energy")


@dataclass
class PatchScores:
    """Every score of N patches (K classes, D-dimensional embedding).

    Attributes:
        probabilities: (N, K) softmax of the head's logits -d_c.
        logits: (N, K).
        closed: (N, K) calibrated class scores of the closed-set density scorer.
        z: (N, D) the gated embedding sqrt(w) * h.
        open: name -> (N,) known-ness score (higher = more like the known classes):
            ``kde`` (log-density), ``mahalanobis`` and ``energy`` baselines.
        in_fit: (N,) bool, the patch's pixels are among the known patches the densities were
            fitted on (its kde/mahalanobis scores are out of fold).
        in_head_training: (N,) bool, the head was trained on these pixels.
    """

    probabilities: np.ndarray
    logits: np.ndarray
    closed: np.ndarray
    z: np.ndarray
    open: dict[str, np.ndarray]
    in_fit: np.ndarray
    in_head_training: np.ndarray


class Attributor:
    """A fitted prototype head with its densities.

    Args:
        head: the trained head.
        settings: JSON-able: ``classes``, ``features``, ``timesteps``, ``divide_by_sigma``,
            ``seed``, ``patch_size``, ``closed_scorer``, ``gmm_components``, ``bandwidth``.
        fit: ``z`` (M, D), ``y`` (M,), ``folds`` (M,), ``keys`` (M, 20) uint8 digests and
            ``head_training`` (M,) of the known patches the densities are fitted on, and
            ``train_keys`` (L, 20), the digests of every patch the head was trained on.
        backbone: the frozen DiffusionPrint for gap/projector features, None for latent ones.
    """

    def __init__(
        self,
        head: PrototypeHead,
        settings: dict,
        fit: dict[str, np.ndarray],
        backbone: DiffusionPrint | None = None,
    ) -> None:
        self.head, self.settings, self.fit, self.backbone = head.eval(), settings, fit, backbone
        self.classes: list[str] = list(settings["classes"])
        z, y, train = fit["z"], fit["y"], fit["head_training"].astype(bool)
        self.closed = ClassDensity(
            settings["closed_scorer"],
            len(self.classes),
            settings["gmm_components"],
            settings["bandwidth"],
            settings["seed"],
        ).fit(z[train], y[train])
        self.kde = OutOfFold(kde_fitter(settings["bandwidth"]), z, y, fit["folds"])
        self.mahalanobis = OutOfFold(mahalanobis_fitter, z, y, fit["folds"])
        self._row = {bytes(k): i for i, k in enumerate(fit["keys"])}
        self._trained = {bytes(k) for k in fit["train_keys"]}

    def embedder(self, device: str | torch.device) -> Embedder:
        """The embedder the head was fitted on (`dpeval.attribute.embed.embed` runs it)."""
        spec = self.settings["features"]
        if spec.startswith(LATENT_PREFIX):
            return latent.LatentEmbedder.from_generator(
                spec[len(LATENT_PREFIX) :],
                timesteps=self.settings["timesteps"],
                divide_by_sigma=self.settings["divide_by_sigma"],
                seed=self.settings["seed"],
                device=device,
            )
        return BackboneEmbedder(self.backbone, spec, device)

    @torch.no_grad()
    def score(self, x: np.ndarray, keys: list[bytes]) -> PatchScores:
        """Scores of features x (N, T, D) of patches with pixel digests ``keys``."""
        xt = torch.from_numpy(x)
        logits = self.head(xt).numpy().astype(np.float64)
        z = self.head.gated(xt).numpy()
        rows = np.array([self._row.get(bytes(k), -1) for k in keys], dtype=np.int64)
        in_fit = rows >= 0
        fold = np.where(in_fit, self.fit["folds"][rows], -1)
        trained = np.array([bytes(k) in self._trained for k in keys], dtype=bool)
        probabilities = np.exp(logits - logits.max(1, keepdims=True))
        return PatchScores(
            probabilities=probabilities / probabilities.sum(1, keepdims=True),
            logits=logits,
            closed=self.closed.scores(z),
            z=z,
            open={
                "kde": self.kde(z, fold),
                "mahalanobis": self.mahalanobis(z, fold),
                "energy": energy(logits),
            },
            in_fit=in_fit,
            in_head_training=trained,
        )

    def save(self, folder: str | Path) -> Path:
        """Write the folder layout of the module docstring."""
        folder = Path(folder)
        self.head.save_pretrained(folder)
        if self.backbone is not None:
            self.backbone.save_pretrained(folder / BACKBONE_DIR)
        calibration = {"center": self.closed.center.tolist(), "scale": self.closed.scale.tolist()}
        info = {**self.settings, "calibration": calibration}
        (folder / ATTRIBUTOR_FILE).write_text(json.dumps(info, indent=1))
        save_file({k: np.ascontiguousarray(v) for k, v in self.fit.items()}, folder / DENSITY_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Attributor:
        """Read a folder written by `save`.

        Raises:
            InputError: naming the folder when a file is missing.
            RuntimeError: when the refitted closed-set scorer differs from the saved one.
        """
        folder = Path(folder)
        for name in (ATTRIBUTOR_FILE, DENSITY_FILE, "config.json"):
            if not (folder / name).is_file():
                raise InputError(f"{folder}: no {name}; not an attributor (dpeval attribute fit)")
        settings = json.loads((folder / ATTRIBUTOR_FILE).read_text())
        calibration = settings.pop("calibration")
        head = PrototypeHead.from_pretrained(str(folder))
        backbone = None
        if not settings["features"].startswith(LATENT_PREFIX):
            backbone = DiffusionPrint.from_pretrained(str(folder / BACKBONE_DIR))
        out = cls(head, settings, load_file(str(folder / DENSITY_FILE)), backbone)
        if not np.allclose(out.closed.center, calibration["center"], rtol=1e-5, atol=1e-6):
            raise RuntimeError(f"{folder}: the refitted {settings['closed_scorer']} scorer differs")
        return out
