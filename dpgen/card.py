"""The dataset card of a build, and `dpgen publish`: push the build and its card to the Hub."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from dpgen.info import build_counts
from dpgen.options import Options, option
from dpgen.schema import SPLITS

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


def dataset_card(out: str | Path, license: str = "other") -> str:
    """README.md for a build: YAML header with one config per split, counts, generators, citation."""
    out = Path(out)
    counts = build_counts(out)
    provenance = json.loads((out / "provenance.json").read_text())
    cfg = provenance["config"]
    header = ["---", f"license: {license}", "tags:", "- image-forensics", "- diffusionprint"]
    header += ["- inpainting", "configs:"]
    for split in SPLITS:
        header += [f"- config_name: {split}", "  data_files:", "  - split: train", f"    path: {split}/shard-*.arrow"]  # fmt: skip
    header.append("---")
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

- `pairs`: rows sharing `group_id` are mutual positives (a generated image's source and
  inpainted patch inside the mask; a real image's source and its K regenerations outside it).
- `negatives`: inside-mask patches of real images (source and each inpainting): hard negatives.
- `images`: one record per source image (crop, mask, prompt, steps, guidance, grids).

Patches are lossless `(3, P, P)` uint8, channels first. Load with
`datasets.load_dataset(REPO, "pairs")` or, after `snapshot_download`, `datasets.load_from_disk`.

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


def publish(
    out: str | Path,
    repo_id: str,
    private: bool = False,
    license: str = "other",
    api: HfApi | None = None,
) -> dict[str, Any]:
    """Write the card into ``out`` and upload the build as a dataset repo.

    Args:
        out: a finished build directory.
        repo_id: ``ORG/NAME`` on the Hub.
        private: create the repo private.
        license: the card's licence identifier.
        api: the client (tests pass one that records calls instead of sending them).

    Returns:
        The upload's commit info as a dict (``url`` among its keys).
    """
    out = Path(out)
    api = api or HfApi()
    (out / "README.md").write_text(dataset_card(out, license=license))
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(out),
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=PUBLISHED,
        commit_message="Upload DiffusionPrint patch dataset (dpgen publish)",
    )
    logger.info("published %s", repo_id)
    return {"url": str(getattr(info, "commit_url", info))}
