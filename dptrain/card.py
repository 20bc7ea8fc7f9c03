"""What a run publishes: the model card next to ``save_pretrained``'s files, and the Hub upload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, ModelCard, ModelCardData

from dpgen.schema import REAL

#: The files of a trained model (checkpoints and metrics stay local).
MODEL_FILES = ("model.safetensors", "config.json", "README.md")


def write_model_card(
    out_dir: str | Path,
    config: dict[str, Any],
    counts: dict[str, int],
    class_names: list[str],
    final_metrics: dict[str, float],
    steps: int,
    num_processes: int,
) -> Path:
    """Write ``README.md`` in ``out_dir``: usage, training settings, data counts, final losses.

    Returns:
        The card's path.
    """
    data = ModelCardData(
        library_name="diffusionprint",
        license="apache-2.0",
        tags=["image-forensics", "inpainting-localization", "diffusionprint"],
        # read by `dpeval probe` to report in-domain accuracy without --in-domain
        training_generators=[n for n in class_names if n != REAL],
    )
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in final_metrics.items())
    counts_md = "\n".join(f"| {k} | {v:,} |" for k, v in counts.items())
    content = f"""---
{data.to_yaml()}
---

# DiffusionPrint extractor

A DnCNN forensic-feature extractor pretrained with DiffusionPrint's MoCo-style objective
(same-source positives, top-{config["top_k"]} opposite-category hard negatives from a
{config["queue_size"]:,}-entry queue, generator head `{config["head"]}`) by `dptrain`.

```python
from dptrain.model import DiffusionPrint

model = DiffusionPrint.from_pretrained("path/or/repo").eval()
maps = model.extract(images)  # (B, 3, H, W) RGB pixels 0..255 -> (B, {config["out_channels"]}, H, W)
```

## Training

{steps:,} steps on {num_processes} process(es), batch {config["batch_size"]} per process,
data `{config["data"]}`; head classes {class_names}; excluded generators
{list(config["exclude_generators"]) or "none"}.

| data | rows |
|---|---|
{counts_md}

Final metrics (last logged step):

| metric | value |
|---|---|
{metrics}

<details><summary>Full configuration</summary>

```json
{json.dumps(config, indent=2)}
```

</details>
"""
    path = Path(out_dir) / "README.md"
    ModelCard(content).save(path)
    return path


def push_to_hub(
    out_dir: str | Path,
    repo_id: str,
    api: HfApi | None = None,
    files: tuple[str, ...] = MODEL_FILES,
    commit_message: str = "Upload DiffusionPrint extractor (dptrain)",
) -> str:
    """Upload ``files`` of ``out_dir`` to the Hub model repo ``repo_id`` (created if needed).

    Returns:
        The repo URL.
    """
    api = api or HfApi()
    url = api.create_repo(repo_id, repo_type="model", exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(out_dir),
        allow_patterns=list(files),
        commit_message=commit_message,
    )
    return str(url)
