"""The dataset card of a build, and `dpgen publish`: push the build and its card to the Hub.

The card's YAML lists one ``configs`` entry per split that holds rows, so every config it names
loads with ``datasets.load_dataset(REPO, NAME)`` (an empty split, such as a ``dpgen roundtrip``
build's ``negatives``, would raise ``Instruction "train" corresponds to no data!``). The upload
is `PUBLISHED`: the card, the ``save_to_disk`` layout (so ``load_from_disk`` works after
``snapshot_download``), provenance and report; never the ledger.

Uploads go through huggingface_hub. ``HfApi.upload_folder`` (one commit, or with huggingface_hub
>= 1.20 and ``hf_xet`` a streamed, resumable series of commits) is the default. Above
``--large-upload-gb`` the resumable ``HfApi.upload_large_folder`` is used where the installed
huggingface_hub has it (0.25 to 1.x; 2.x removed it, its ``upload_folder`` resumes by itself).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from dpgen.info import build_counts
from dpgen.options import OptionError, Options, option
from dpgen.schema import IMAGES, NEGATIVES, PAIRS, SPLITS

logger = logging.getLogger(__name__)

CITATION = """@inproceedings{giakoumoglou2026diffusionprint,
  title     = {DiffusionPrint: Learning Generative Fingerprints for Diffusion-Based Inpainting Localization},
  author    = {Giakoumoglou, Nikolaos and Papadopoulos, Symeon},
  booktitle = {CVPR Workshops (AIMS)},
  year      = {2026}
}"""

#: Files of a build that belong on the Hub (the ledger and temporary files do not).
PUBLISHED = [
    "README.md",
    "dataset_dict.json",
    "provenance.json",
    "report.json",
    *(f"{s}/*" for s in SPLITS),
]


@dataclass(kw_only=True)
class PublishConfig(Options):
    """``dpgen publish``: push a finished build and its dataset card to the Hub."""

    dir: Path = option(help="a finished dpgen build folder", positional=True)
    repo_id: str = option(help="the dataset repo, ORG/NAME")
    private: bool = option(False, help="create the repo private")
    license: str = option("other", help="licence identifier for the card")
    revision: str | None = option(
        None, help="branch to commit to, created from main if missing (default: main)"
    )
    create_pr: bool = option(
        False, help="open a pull request against main instead of committing to it"
    )
    large_upload_gb: float = option(
        5.0,
        help="above this many GB of published files, upload with huggingface_hub's resumable "
        "upload_large_folder where the installed version has it (no commit message, no PR)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.create_pr and self.revision:
            # huggingface_hub opens pull requests against the default branch only
            raise OptionError("create_pr: a pull request targets main; drop --revision")
        if self.large_upload_gb < 0:
            raise OptionError(f"large_upload_gb must be >= 0, got {self.large_upload_gb}")


#: What each split holds, for the card.
SPLIT_TEXT = {
    PAIRS: "rows sharing `group_id` are mutual positives (a generated image's source and "
    "inpainted patch inside the mask; a real image's source and its K regenerations outside it)",
    NEGATIVES: "inside-mask patches of real images (source and each inpainting): hard negatives",
    IMAGES: "one record per source image (crop, mask, prompt, steps, guidance, grids)",
}


def loadable_configs(counts: dict[str, Any]) -> list[str]:
    """The splits of a build that hold rows, in `SPLITS` order: the card's configs.

    Args:
        counts: `dpgen.info.build_counts` of the build.
    """
    return [split for split in SPLITS if counts[split]["rows"] > 0]


def dataset_card(out: str | Path, license: str = "other") -> str:
    """README.md for a build: YAML header with one config per non-empty split, counts, generators,
    citation."""
    out = Path(out)
    counts = build_counts(out)
    provenance = json.loads((out / "provenance.json").read_text())
    cfg = provenance["config"]
    configs = loadable_configs(counts)
    header = ["---", f"license: {license}", "tags:", "- image-forensics", "- diffusionprint"]
    header += ["- inpainting", "configs:"]
    for split in configs:
        header += [f"- config_name: {split}", "  data_files:", "  - split: train", f"    path: {split}/shard-*.arrow"]  # fmt: skip
    header.append("---")
    splits = [f"- `{split}`: {SPLIT_TEXT[split]}." for split in configs]
    splits += [
        f"- `{split}`: empty in this build (mode `{cfg['mode']}`), so not a config; it stays in "
        "the `load_from_disk` layout."
        for split in SPLITS
        if split not in configs
    ]
    rows = ["| split | category | generator | patches |", "|---|---|---|---:|"]
    for split in SPLITS[:2]:
        for cat, by_gen in counts[split]["by_category"].items():
            rows += [f"| {split} | {cat} | {gen} | {n:,} |" for gen, n in by_gen.items()]
    gens = ["| name | label | inpainting checkpoint | pipeline | steps | guidance | strength |"]
    gens.append("|---|---|---|---|---|---|---|")
    for g in provenance["generators"]:
        gens.append(
            f"| {g['name']} | {g['label']} | `{g['inpaint']['checkpoint']}` | "
            f"{g['inpaint']['pipeline']} | {g['steps']} | {g['guidance']} | {g['strength']} |"
        )
    real = cfg["real"] or "the photographs bundled with dpgen (see dpgen/data/ATTRIBUTION.md)"
    warning = (
        "\n> **Random weights.** Built with `--random-weights`: the generators are real-size "
        "architectures with random weights, for benchmarks. This is not real data.\n"
        if provenance.get("weights") == "random"
        else ""
    )
    body = f"""
# DiffusionPrint patch dataset
{warning}
Aligned inside/outside-mask patch pairs and a hard-negative pool for pretraining
[DiffusionPrint](https://github.com/mever-team/diffusionprint), built by `dpgen build` with
`--seed {cfg["seed"]}`: {cfg["patch_size"]}x{cfg["patch_size"]} patches on a
{cfg["grid"][0]}x{cfg["grid"][1]} grid, mask policy `{cfg.get("mask_policy", "none")}`, mode `{cfg["mode"]}`.

{chr(10).join(splits)}

Patches are lossless `(3, P, P)` uint8, channels first. Load with
`datasets.load_dataset(REPO, "{configs[0]}")` or, after `snapshot_download`, `datasets.load_from_disk`.

## Counts

{chr(10).join(rows)}

Images: {counts["images"]["by_source"]}; pairing formulas hold: {counts["formulas_hold"]}.

## Generators

{chr(10).join(gens)}

## Sources and licence

Real images: {real}. Generated images: made by each generator's text-to-image pipeline unless
a folder was given ({cfg.get("generated") or "none given"}). The patches inherit the licences of their
source images; the card's `license: {license}` applies to what dpgen adds.

## Provenance

Package versions, the resolved manifests and the git revision are in `provenance.json` and in
each split's `dataset_info.json` (`description`).

## Citation

```bibtex
{CITATION}
```
"""
    return "\n".join(header) + "\n" + body


def published_bytes(out: str | Path) -> int:
    """Total size in bytes of the files of ``out`` that match `PUBLISHED`."""
    out = Path(out)
    files = {p for pattern in PUBLISHED for p in out.glob(pattern) if p.is_file()}
    return sum(p.stat().st_size for p in files)


def publish(config: PublishConfig, api: HfApi | None = None) -> dict[str, Any]:
    """Write the card into the build and upload `PUBLISHED` to the dataset repo.

    The repo is created first (``exist_ok``), and the ``--revision`` branch from main when
    missing: both upload calls commit to an existing branch only. Above ``large_upload_gb``
    (and without ``--create-pr``) the upload is ``upload_large_folder`` when the client has it:
    resumable by rerunning the same command, it keeps its state in ``DIR/.cache/huggingface``,
    writes its own commit messages and returns no commit.

    Args:
        config: the build folder, repo, visibility, licence, branch or PR, size threshold.
        api: the client (tests pass one that records calls instead of sending them).

    Returns:
        ``{"url": ...}``: the pull request, the commit, or (``upload_large_folder``) the tree of
        the branch.
    """
    out, repo_id = Path(config.dir), config.repo_id
    api = api or HfApi()
    (out / "README.md").write_text(dataset_card(out, license=config.license))
    api.create_repo(repo_id, repo_type="dataset", private=config.private, exist_ok=True)
    if config.revision:
        api.create_branch(repo_id, branch=config.revision, repo_type="dataset", exist_ok=True)
    size = published_bytes(out)
    if (
        size > config.large_upload_gb * 1e9
        and not config.create_pr
        and hasattr(api, "upload_large_folder")
    ):
        logger.info("%s: %.1f GB, resumable upload_large_folder", out, size / 1e9)
        api.upload_large_folder(
            repo_id=repo_id,
            folder_path=str(out),
            repo_type="dataset",
            revision=config.revision,
            private=config.private,
            allow_patterns=PUBLISHED,
        )
        url = f"{api.endpoint}/datasets/{repo_id}/tree/{config.revision or 'main'}"
    else:
        info = api.upload_folder(
            folder_path=str(out),
            repo_id=repo_id,
            repo_type="dataset",
            revision=config.revision,
            create_pr=config.create_pr,
            allow_patterns=PUBLISHED,
            commit_message="Upload DiffusionPrint patch dataset (dpgen publish)",
        )
        url = getattr(info, "pr_url", None) or getattr(info, "commit_url", info)
    logger.info("published %s (%.2f GB)", repo_id, size / 1e9)
    return {"url": str(url)}
