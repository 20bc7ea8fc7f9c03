"""Linear probe of frozen features: real vs generated on a `dpgen evalset` (paper Sec. 4.1).

Embeddings are the backbone's global-average-pooled features (the projector is not used). A
logistic regression (scikit-learn's ``LogisticRegression``, lbfgs, L2) is fitted on embeddings
standardised by ``StandardScaler`` on a stratified 70 % of the patches and scored on the other 30 %: overall accuracy, in-domain accuracy (the generators the extractor was
trained on, paper Table 1's "IID"), accuracy per source, and the confusion matrix.

In-domain accuracy is measured on the test patches whose producer is an in-domain generator
(generated and latent-reconstructed alike) plus the pristine real patches, which belong to every
domain. A producer is in-domain when its name, or its label as the evaluation set records it
(``source_label``: ``tiny-sd21`` -> ``sd21``), is in the in-domain list.
"""

from __future__ import annotations

import json
import logging
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from datasets import load_from_disk
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from dpeval.extractors import Extractor
from dpgen.errors import InputError
from dpgen.options import OptionError, Options, option
from dpgen.schema import EVAL, EVAL_KINDS, eval_features, patch_array

logger = logging.getLogger(__name__)

LABELS = ("real", "generated")
#: Key of the training generators in the model card's YAML metadata (written by dptrain).
CARD_KEY = "training_generators"
CARD_SECTION = "## Linear probe"
#: lbfgs iterations at most (it needs about 40 on 360k x 64 GAP features, paper scale).
MAX_ITER = 1000


@dataclass(kw_only=True)
class ProbeConfig(Options):
    """``dpeval probe``: which model, which evaluation set, and the probe's settings."""

    model: str = option(help="DiffusionPrint folder or Hub id, noiseprint++:PATH, or random[:SEED]")
    data: str = option(help="folder written by dpgen evalset")
    in_domain: tuple[str, ...] | None = option(
        None,
        help="generators the model was trained on, comma-separated (default: the "
        "training_generators of the model card; required for a card without them)",
    )
    json: bool = option(False, help="print the result as JSON, not tables")
    update_card: bool = option(
        False, help="write the result into the 'Linear probe' section of the model's README.md"
    )
    device: str | None = option(None, help="torch device (default: cuda when available, else cpu)")
    batch_size: int = option(512, help="patches per forward pass of the extractor")
    test_fraction: float = option(0.3, help="share of every (kind, source) stratum held out")
    C: float = option(1.0, help="inverse L2 strength of the logistic regression (scikit-learn's C)")
    seed: int = option(0, help="seed of the split")
    progress: bool = option(True, help="show a progress bar during feature extraction")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.test_fraction < 1:
            raise OptionError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")


@dataclass
class ProbeResult:
    """Accuracies in [0, 1] on the held-out split.

    Attributes:
        model: the extractor spec.
        overall: accuracy on every test patch.
        in_domain: accuracy on the in-domain test patches (see the module docstring), or
            None when no in-domain generator is known or none is in the evaluation set.
        in_domain_generators: the list it was computed for.
        per_source: ``"<kind>/<source>"`` -> accuracy.
        confusion: 2x2 counts, rows true ``LABELS``, columns predicted.
        n_train, n_test: patches in each split.
        fit_seconds: wall time of the classifier's fit (standardisation and logistic
            regression), in seconds; feature extraction is not included.
    """

    model: str
    overall: float
    in_domain: float | None
    in_domain_generators: list[str]
    per_source: dict[str, float]
    confusion: list[list[int]]
    n_train: int
    n_test: int
    fit_seconds: float
    labels: list[str] = field(default_factory=lambda: list(LABELS))

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        """The result as Markdown tables (the screen output and the model-card section)."""
        pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}"  # noqa: E731
        in_dom = ", ".join(self.in_domain_generators) or "none known"
        lines = [
            f"Linear probe of `{self.model}`: {self.n_train:,} train / {self.n_test:,} test patches.",
            "",
            "| metric | accuracy (%) |",
            "|---|---|",
            f"| overall | {pct(self.overall)} |",
            f"| in-domain ({in_dom}) | {pct(self.in_domain)} |",
        ]
        lines += [f"| {key} | {pct(acc)} |" for key, acc in self.per_source.items()]
        (tn, fp), (fn, tp) = self.confusion
        lines += [
            "",
            "| true \\ predicted | real | generated |",
            "|---|---|---|",
            f"| real | {tn} | {fp} |",
            f"| generated | {fn} | {tp} |",
        ]
        return "\n".join(lines)


def stratified_split(strata: list[str], test_fraction: float, seed: int) -> np.ndarray:
    """Boolean test mask holding out ``round(test_fraction * n)`` of every stratum at random.

    Every stratum of two or more patches keeps at least one patch on each side.
    """
    rng = np.random.default_rng(seed)
    strata_arr = np.asarray(strata)
    test = np.zeros(len(strata_arr), dtype=bool)
    for value in sorted(set(strata)):
        idx = np.flatnonzero(strata_arr == value)
        n_test = int(round(test_fraction * len(idx)))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test[rng.permutation(idx)[:n_test]] = True
    return test


def in_domain_mask(
    sources: list[str], source_labels: list[str], kinds: list[str], in_domain: list[str]
) -> np.ndarray:
    """Patches of in-domain producers plus pristine real patches (see the module docstring)."""
    wanted = set(in_domain)
    return np.array(
        [
            kind == "pristine" or src in wanted or lab in wanted
            for src, lab, kind in zip(sources, source_labels, kinds, strict=True)
        ]
    )


def read_training_generators(model: str) -> list[str] | None:
    """The generators a local DiffusionPrint folder was trained on, from its model card.

    dptrain writes them as the list ``training_generators`` in the YAML metadata of the folder's
    README.md. Returns None when the folder, the card or the key is missing.
    """
    card = Path(model) / "README.md"
    if not card.is_file():
        return None
    from huggingface_hub import ModelCard  # imported here: only local cards are read

    value = ModelCard.load(card).data.to_dict().get(CARD_KEY)
    if value is None:
        return None
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise InputError(f"{card}: {CARD_KEY} must be a list of generator names, got {value!r}")
    return value


@dataclass
class Evalset:
    """The patches of a ``dpgen evalset`` and their per-patch annotations.

    Attributes:
        patches: (N, 3, P, P) uint8, a zero-copy view of the Arrow column.
        labels: (N,) int64, 0 real / 1 generated.
        sources: producer names (``real`` for pristine patches).
        source_labels: producer labels (``sd21`` for ``tiny-sd21``; ``real``).
        kinds: one of `dpgen.schema.EVAL_KINDS` each.
        held_out: (N,) bool, producers set aside as unseen (``dpgen evalset --held-out``).
        image_ids: the source image of each patch.
    """

    patches: np.ndarray
    labels: np.ndarray
    sources: list[str]
    source_labels: list[str]
    kinds: list[str]
    held_out: np.ndarray
    image_ids: list[str]


def load_evalset(path: str | Path) -> Evalset:
    """Read an evaluation set saved by ``dpgen evalset``.

    Raises:
        InputError: naming the folder when it is not an evaluation set.
    """
    try:
        data = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as err:
        raise InputError(f"{path}: not a dataset saved by dpgen evalset: {err}") from None
    if EVAL not in data:
        raise InputError(f"{path}: no split {EVAL!r} (found {list(data)}); run dpgen evalset")
    table = data[EVAL].data
    missing = [c for c in eval_features(1) if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: columns {missing} missing; rebuild it with dpgen evalset")
    kinds = table.column("kind").to_pylist()
    unknown = set(kinds) - set(EVAL_KINDS)
    if unknown:
        raise InputError(f"{path}: unknown kind(s) {sorted(unknown)}; expected {EVAL_KINDS}")
    return Evalset(
        patches=patch_array(table.column("patch")),
        labels=table.column("label").to_numpy().astype(np.int64),
        sources=table.column("source").to_pylist(),
        source_labels=table.column("source_label").to_pylist(),
        kinds=kinds,
        held_out=table.column("held_out").to_numpy(zero_copy_only=False).astype(bool),
        image_ids=table.column("image_id").to_pylist(),
    )


def _accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    return float((pred == true).mean())


def embed(extractor: Extractor, patches: np.ndarray, config: ProbeConfig) -> np.ndarray:
    """GAP features (N, C) float32 of ``patches`` (N, 3, P, P) uint8, the extractor left frozen.

    Raises:
        RuntimeError: when the extractor's weights changed during extraction.
    """
    before = extractor.fingerprint()
    feats = extractor.pool_all(patches, config.batch_size, config.progress)
    if extractor.fingerprint() != before:
        raise RuntimeError(f"{extractor.name}: backbone weights changed during probing")
    return feats


def fit_classifier(x: np.ndarray, y: np.ndarray, C: float = 1.0) -> Pipeline:
    """Standardise, then fit a binary L2 logistic regression (scikit-learn, lbfgs).

    Args:
        x: (N, D) training features; the scaler's mean and variance come from them only.
        y: (N,) labels, 0 real / 1 generated.
        C: inverse L2 strength; the objective is ``0.5 ||w||^2 + C sum_i logloss_i`` with an
            unpenalised intercept.

    Returns:
        The fitted ``StandardScaler -> LogisticRegression`` pipeline (``predict`` gives 0/1).
    """
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=MAX_ITER))
    with warnings.catch_warnings():
        # reported once, in the log, below (scikit-learn's own warning goes to stderr unformatted)
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    if clf[-1].n_iter_[0] >= MAX_ITER:
        logger.warning("logistic regression: no convergence in %d iterations", MAX_ITER)
    return clf


def run_probe(extractor: Extractor, config: ProbeConfig) -> ProbeResult:
    """Probe ``extractor`` on the evaluation set at ``config.data``.

    Args:
        extractor: the frozen feature extractor (see `dpeval.extractors.load_extractor`).
        config: the evaluation set, the in-domain generators (names or labels the extractor
            was trained on; None: unknown, no in-domain accuracy), split, regularisation and
            batching settings.

    Raises:
        InputError: when the evaluation set lacks real or generated patches.
        RuntimeError: when the extractor's weights changed during probing.
    """
    evalset = load_evalset(config.data)
    labels = evalset.labels
    if len(np.unique(labels)) != 2:
        raise InputError(f"{config.data}: the probe needs both real and generated patches")
    feats = embed(extractor, evalset.patches, config)  # (N, C)
    strata = [f"{k}/{s}" for k, s in zip(evalset.kinds, evalset.sources, strict=True)]
    test = stratified_split(strata, config.test_fraction, config.seed)
    start = time.perf_counter()
    clf = fit_classifier(feats[~test], labels[~test], config.C)
    fit_seconds = time.perf_counter() - start
    n_iter = int(clf[-1].n_iter_[0])
    logger.info("logistic regression: %d iterations, %.2f s", n_iter, fit_seconds)
    pred = clf.predict(feats[test]).astype(np.int64)
    true = labels[test]
    confusion = np.zeros((2, 2), dtype=np.int64)
    np.add.at(confusion, (true, pred), 1)
    return ProbeResult(
        model=extractor.name,
        overall=_accuracy(pred, true),
        in_domain=_in_domain_accuracy(evalset, test, pred, config.in_domain),
        in_domain_generators=list(config.in_domain or []),
        per_source=_per_source(np.asarray(strata)[test], pred, true),
        confusion=confusion.tolist(),
        n_train=int((~test).sum()),
        n_test=int(test.sum()),
        fit_seconds=fit_seconds,
    )


def _per_source(test_strata: np.ndarray, pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {
        key: _accuracy(pred[test_strata == key], true[test_strata == key])
        for key in sorted(set(test_strata.tolist()))
    }


def _in_domain_accuracy(
    evalset: Evalset, test: np.ndarray, pred: np.ndarray, in_domain: tuple[str, ...] | None
) -> float | None:
    """Accuracy on the in-domain test patches; None without an in-domain producer among them."""
    if not in_domain:
        return None
    pick = lambda values: [v for v, t in zip(values, test, strict=True) if t]  # noqa: E731
    mask = in_domain_mask(
        pick(evalset.sources), pick(evalset.source_labels), pick(evalset.kinds), list(in_domain)
    )
    true = evalset.labels[test]
    # Pristine patches alone are no in-domain measure: require an in-domain producer.
    if not (mask & (true == 1)).any():
        return None
    return _accuracy(pred[mask], true[mask])


def update_card(model_dir: str | Path, result: ProbeResult, data: str | Path) -> Path:
    """Write the probe's tables into the "Linear probe" section of ``model_dir``/README.md.

    The section is replaced when present (up to the next ``## `` heading), appended otherwise.

    Raises:
        ValueError: when ``model_dir`` has no README.md (only dptrain's local folders do).
    """
    card = Path(model_dir) / "README.md"
    if not card.is_file():
        raise InputError(
            f"{card}: no model card to update (--update-card needs a local dptrain folder)"
        )
    section = f"{CARD_SECTION}\n\nEvaluation set `{data}`.\n\n{result.to_markdown()}\n"
    text = card.read_text()
    pattern = re.compile(rf"^{re.escape(CARD_SECTION)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    card.write_text(text)
    return card
