"""``dpeval attribute fit`` and ``dpeval attribute score``: settings and the two runs.

Classes. A pristine patch is ``real``; a generated patch belongs to its producer's label (the
evaluation set's ``source_label``: ``tiny-sd21`` -> ``sd21``). Known classes are ``real`` and
the ``--known`` labels (default: every generated producer not marked held out). Latent-
reconstructed patches are real images decoded by a generator's VAE: they answer the linear
probe's question, not "which generator made this image", and are left out of fitting and of
every metric (``score`` still writes their per-patch scores).

Fit. The known images are split 70/30 per class (`dpeval.probe.stratified_split` over images,
so an image's patches never straddle the split); the head and the closed-set density scorer are
fitted on the 70 %, and closed-set metrics are measured on the 30 %, beside a multinomial
logistic-regression probe (scikit-learn) on the same standardised features and split. The open-
set KDE is fitted on every known patch (bandwidth and folds grouped by image); the generated
patches of held-out producers (``dpgen evalset --held-out``) are the unseen ones. Fit writes the
attributor folder (`dpeval.attribute.attributor`) and its evaluation (`dpeval.attribute.report`).

Score. Loads an attributor, embeds every patch of ``--data`` with the attributor's own
embedder and reports the same metrics; ``--unseen`` names the unseen producers (default: those
marked held out in the set).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from dpeval.attribute import density, embed, latent, report
from dpeval.attribute.attributor import Attributor
from dpeval.attribute.metrics import closed_set_metrics
from dpeval.attribute.prototype import AGGREGATIONS, PrototypeHead
from dpeval.attribute.train import HeadTraining, train_head
from dpeval.extractors import load_extractor
from dpeval.probe import Evalset, load_evalset, stratified_split
from dpgen.errors import InputError
from dpgen.evalset import GENERATED, PRISTINE
from dpgen.options import OptionError, Options, option

logger = logging.getLogger(__name__)

REAL = "real"
#: FitConfig fields the attributor keeps (attributor.json).
SAVED_SETTINGS = (
    "model",
    "features",
    "timesteps",
    "divide_by_sigma",
    "seed",
    "closed_scorer",
    "gmm_components",
)


@dataclass(kw_only=True)
class _Common(Options):
    data: str = option(help="folder written by dpgen evalset")
    out: str = option(help="output folder (new or empty)")
    batch_size: int = option(512, help="patches per forward pass of the embedder")
    device: str | None = option(None, help="torch device (default: cuda when available, else cpu)")
    progress: bool = option(True, help="show a progress bar while embedding")
    json: bool = option(False, help="print the report as JSON, not tables")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 1:
            raise OptionError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(kw_only=True)
class FitConfig(_Common):
    """``dpeval attribute fit``: features, known classes, the head and the densities."""

    out: str = option(help="the attributor folder to write (new or empty)")
    model: str | None = option(
        None,
        help="DiffusionPrint folder or Hub id, noiseprint++:PATH or random[:SEED] "
        "(required unless --features latent:GENERATOR)",
    )
    features: str = option(
        "gap",
        help="gap (GAP of the frozen map), projector, or latent:GENERATOR (signal leak)",
    )
    known: list[str] | None = option(
        None,
        help="known generator labels or names, comma-separated; real is always known "
        "(default: every generated producer not marked held out)",
    )
    timesteps: list[int] = option([0], help="latent path: the t-set of forward noising")
    divide_by_sigma: bool = option(False, help="latent path: divide z_t by sigma_t")
    prototypes: int = option(6, help="prototypes per class (M)")
    aggregation: str = option("min", help="class distance over prototypes", choices=AGGREGATIONS)
    closed_scorer: str = option(
        "mahalanobis", help="closed-set density scorer", choices=density.CLOSED_SCORERS
    )
    gmm_components: int = option(3, help="components per class of the gmm scorer")
    bandwidths: list[float] = option(
        list(density.BANDWIDTHS), help="KDE bandwidths tried by cross-validation"
    )
    folds: int = option(5, help="cross-validation folds (grouped by image)")
    density_max_patches: int | None = option(
        10000, help="known patches the densities are fitted on at most (a random subset)"
    )
    steps: int = option(2000, help="optimizer steps of the head")
    head_batch_size: int = option(256, help="patches per optimizer step")
    lr: float = option(3e-4, help="AdamW learning rate")
    weight_decay: float = option(1e-4, help="AdamW weight decay")
    test_fraction: float = option(0.3, help="share of every known class's images held out")
    seed: int = option(0, help="seeds the split, the head and the latent noise")

    def __post_init__(self) -> None:
        super().__post_init__()
        embed.check_features(self.features)
        if not 0 < self.test_fraction < 1:
            raise OptionError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        if min(self.prototypes, self.steps, self.head_batch_size, self.gmm_components) < 1:
            raise OptionError("prototypes, steps, head_batch_size, gmm_components must be >= 1")
        if self.density_max_patches is not None and self.density_max_patches < 2 * self.folds:
            raise OptionError(
                f"density_max_patches must be >= 2 x folds, got {self.density_max_patches}"
            )
        if self.folds < 2 or not self.bandwidths or min(self.bandwidths) <= 0:
            raise OptionError("folds must be >= 2 and bandwidths positive")


@dataclass(kw_only=True)
class ScoreConfig(_Common):
    """``dpeval attribute score``: an attributor, patches to score, the unseen producers."""

    attributor: str = option(help="folder written by dpeval attribute fit")
    unseen: list[str] | None = option(
        None,
        help="unseen generators (names or labels), comma-separated "
        "(default: the producers marked held out in --data)",
    )


def _new_folder(path: str) -> Path:
    out = Path(path)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: output folder exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _device(name: str | None) -> str:
    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def _label(evalset: Evalset, i: int) -> str | None:
    """The class a row belongs to: real, its producer's label, or None (reconstructed)."""
    kind = evalset.kinds[i]
    return REAL if kind == PRISTINE else evalset.source_labels[i] if kind == GENERATED else None


def _generated_producers(evalset: Evalset) -> dict[str, tuple[str, bool]]:
    """Name -> (label, held out) of every producer of generated patches."""
    return {
        evalset.sources[i]: (evalset.source_labels[i], bool(evalset.held_out[i]))
        for i, kind in enumerate(evalset.kinds)
        if kind == GENERATED
    }


def known_classes(evalset: Evalset, known: list[str] | None, data: str) -> list[str]:
    """``[real, *labels]`` for ``--known`` names or labels (see the module docstring).

    Raises:
        InputError: a name that produced no generated patch, or one marked held out.
    """
    producers = _generated_producers(evalset)
    if known is None:
        labels = [lab for lab, held in producers.values() if not held]
    else:
        labels = []
        for name in (n for n in known if n != REAL):  # real is always known
            match = [(lab, held) for src, (lab, held) in producers.items() if name in (src, lab)]
            if not match:
                raise InputError(
                    f"--known {name}: no generated patches of that name or label in {data}"
                )
            if any(held for _, held in match):
                raise InputError(f"--known {name}: marked held out (unseen) in {data}")
            labels.append(match[0][0])
    labels = list(dict.fromkeys(lab for lab in labels if lab != REAL))
    if not labels:
        raise InputError(f"{data}: no known generator; pass --known or mark fewer as held out")
    return [REAL, *labels]


def select_rows(evalset: Evalset, classes: list[str], unseen: set[str]) -> report.Rows:
    """Every row of the set, its class index (-1: none of ``classes``) and unseen flag.

    Raises:
        InputError: when an unseen producer's label is a known class.
    """
    labels = [_label(evalset, i) for i in range(len(evalset.kinds))]
    y = np.array([classes.index(c) if c in classes else -1 for c in labels], dtype=np.int64)
    named = [
        s in unseen or lab in unseen
        for s, lab in zip(evalset.sources, evalset.source_labels, strict=True)
    ]
    is_unseen = np.array([k == GENERATED for k in evalset.kinds]) & np.array(named, dtype=bool)
    if np.any(is_unseen & (y >= 0)):
        raise InputError(f"unseen producers {sorted(unseen)} include a known class of {classes}")
    return report.Rows(
        index=np.arange(len(y)),
        y=y,
        unseen=is_unseen,
        producers=list(evalset.sources),
        kinds=list(evalset.kinds),
        images=[f"{s}/{i}" for s, i in zip(evalset.sources, evalset.image_ids, strict=True)],
    )


def split_by_image(
    images: list[str], y: np.ndarray, test_fraction: float, seed: int, data: str
) -> np.ndarray:
    """(N,) bool test mask: ``test_fraction`` of every class's images (`stratified_split`).

    Raises:
        InputError: a class with patches of fewer than 2 images.
    """
    names, first = np.unique(np.asarray(images), return_index=True)
    image_class = y[first]
    counts = np.bincount(image_class)
    if counts.min() < 2:
        raise InputError(
            f"{data}: every known class needs at least 2 images, got {counts.tolist()}"
        )
    test_images = names[stratified_split(image_class.tolist(), test_fraction, seed)]
    return np.isin(np.asarray(images), test_images)


def _embedder(config: FitConfig, device: str):
    """(embedder, backbone or None) for the fit's feature spec."""
    if config.features.startswith(embed.LATENT_PREFIX):
        name = config.features[len(embed.LATENT_PREFIX) :]
        embedder = latent.LatentEmbedder.from_generator(
            name,
            timesteps=config.timesteps,
            divide_by_sigma=config.divide_by_sigma,
            seed=config.seed,
            device=device,
        )
        return embedder, None
    backbone = load_extractor(config.model, device).model
    return embed.BackboneEmbedder(backbone, config.features, device), backbone


def linear_probe(x: np.ndarray, y: np.ndarray, test: np.ndarray, classes: list[str]) -> dict:
    """Multinomial logistic regression on standardised features, same split: closed-set metrics."""
    flat = x.reshape(len(x), -1)
    scaler = StandardScaler().fit(flat[~test])
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(flat[~test]), y[~test])
    return closed_set_metrics(y[test], clf.predict_proba(scaler.transform(flat[test])), classes)


def _fit_attributor(
    config: FitConfig,
    x: np.ndarray,
    y: np.ndarray,
    groups: list[str],
    test: np.ndarray,
    keys: list[bytes],
    classes: list[str],
    patch_size: int,
    backbone,
    out: Path,
) -> Attributor:
    """Train the head on the known training rows, then fit the densities on the known rows."""
    with torch.random.fork_rng(devices=[]):  # a seeded initialisation; the caller's RNG untouched
        torch.manual_seed(config.seed)
        head = PrototypeHead(
            x.shape[2], len(classes), config.prototypes, x.shape[1], config.aggregation
        )
    training = HeadTraining(
        config.steps, config.head_batch_size, config.lr, config.weight_decay, seed=config.seed
    )
    head = train_head(head, x[~test], y[~test], training, out)
    with torch.no_grad():
        z = head.gated(torch.from_numpy(x)).numpy()
    fitted, bandwidth = _density_data(config, z, y, groups, test, keys)
    settings = {k: getattr(config, k) for k in SAVED_SETTINGS}
    settings.update(classes=classes, patch_size=patch_size, bandwidth=bandwidth)
    return Attributor(head, settings, fitted, backbone)


def _key_array(keys: list[bytes]) -> np.ndarray:
    """(N, 20) uint8: the digests as an array for safetensors."""
    return np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), 20)


def _density_data(
    config: FitConfig,
    z: np.ndarray,
    y: np.ndarray,
    groups: list[str],
    test: np.ndarray,
    keys: list[bytes],
) -> tuple[dict[str, np.ndarray], float]:
    """The known patches the densities are fitted on, their folds, and the KDE bandwidth.

    At most ``density_max_patches`` of them, drawn with the seed: a KDE scores every query
    against every fitted patch. Patches left out are scored by the full KDE, out of sample.
    """
    rows = np.arange(len(z))
    if config.density_max_patches is not None and len(z) > config.density_max_patches:
        rng = np.random.default_rng(config.seed)
        rows = np.sort(rng.choice(len(z), config.density_max_patches, replace=False))
        logger.info("densities fitted on %d of %d known patches", len(rows), len(z))
    groups = [groups[i] for i in rows]
    if len(set(groups)) < config.folds:
        raise InputError(f"{config.data}: {len(set(groups))} known images, fewer than --folds")
    bandwidth = density.select_bandwidth(z[rows], groups, config.bandwidths, config.folds)
    logger.info("open-set KDE bandwidth %.2f (grid %s)", bandwidth, config.bandwidths)
    fitted = {
        "z": z[rows],
        "y": y[rows],
        "folds": density.fold_ids(groups, config.folds),
        "keys": _key_array([keys[i] for i in rows]),
        "head_training": (~test[rows]).astype(np.uint8),
        "train_keys": _key_array([k for k, t in zip(keys, test, strict=True) if not t]),
    }
    return fitted, bandwidth


def _evaluate(attributor: Attributor, x, keys, rows: report.Rows, out: Path, title: str) -> tuple:
    scores = attributor.score(x, keys)
    classes = attributor.classes
    result = report.evaluate(scores, rows, classes, attributor.settings["closed_scorer"])
    report.write_tables(out, scores, rows, classes)
    report.write_figures(out, scores, rows, result, title)
    return result


def fit(config: FitConfig) -> dict:
    """Fit an attributor into ``config.out`` and evaluate it on the fit set (module docstring).

    Returns:
        The report (`dpeval.attribute.report.evaluate`, with ``linear_probe`` among the
        closed-set results, and the KDE ``bandwidth``).
    """
    if config.model is None and not config.features.startswith(embed.LATENT_PREFIX):
        raise InputError(f"--model: required with --features {config.features}")
    evalset = load_evalset(config.data)
    classes = known_classes(evalset, config.known, config.data)
    held = {s for s, (_, h) in _generated_producers(evalset).items() if h}
    rows = select_rows(evalset, classes, held)
    known = np.flatnonzero(rows.y >= 0)
    groups, y = [rows.images[i] for i in known], rows.y[known]
    test = split_by_image(groups, y, config.test_fraction, config.seed, config.data)
    if len(set(groups)) < config.folds:
        raise InputError(f"{config.data}: {len(set(groups))} known images, fewer than --folds")
    embedder, backbone = _embedder(config, _device(config.device))
    out = _new_folder(config.out)
    x = embed.embed(embedder, evalset.patches, config.batch_size, config.progress)
    keys = density.patch_keys(evalset.patches)
    attributor = _fit_attributor(
        config,
        x[known],
        y,
        groups,
        test,
        [keys[i] for i in known],
        classes,
        evalset.patches.shape[-1],
        backbone,
        out,
    )
    attributor.save(out)
    title = f"{config.features} of {config.model}" if config.model else config.features
    result = _evaluate(attributor, x, keys, rows, out, title)
    result["closed_set"]["linear_probe"] = linear_probe(x[known], y, test, classes)
    bandwidth = attributor.settings["bandwidth"]
    result.update(
        attributor=str(out), data=config.data, features=config.features, bandwidth=bandwidth
    )
    report.write_report(out, result)
    return result


def score(config: ScoreConfig) -> dict:
    """Score every patch of ``config.data`` with a saved attributor; metrics where possible."""
    attributor = Attributor.load(config.attributor)
    evalset = load_evalset(config.data)
    size = attributor.settings["patch_size"]
    if evalset.patches.shape[-1] != size:
        raise InputError(
            f"{config.data}: {evalset.patches.shape[-1]}-px patches; the attributor was fitted "
            f"on {size} px"
        )
    producers = _generated_producers(evalset)
    if config.unseen is None:
        unseen = {s for s, (_, h) in producers.items() if h}
    else:
        unseen = set(config.unseen)
        found = {n for s, (lab, _) in producers.items() for n in (s, lab)}
        if unseen - found:
            raise InputError(
                f"--unseen {sorted(unseen - found)}: no generated patches of that name or label "
                f"in {config.data}"
            )
    rows = select_rows(evalset, attributor.classes, unseen)
    embedder = attributor.embedder(_device(config.device))
    out = _new_folder(config.out)
    x = embed.embed(embedder, evalset.patches, config.batch_size, config.progress)
    keys = density.patch_keys(evalset.patches)
    result = _evaluate(attributor, x, keys, rows, out, attributor.settings["features"])
    result.update(attributor=config.attributor, data=config.data, unseen=sorted(unseen))
    report.write_report(out, result)
    return result
