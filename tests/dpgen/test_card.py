"""The dataset card and `dpgen publish`, checked at the network boundary (no request is sent)."""

import fnmatch
import json
from pathlib import Path

from huggingface_hub import HfApi

from dpgen.card import PUBLISHED, dataset_card, publish
from dpgen.cli import main as dpgen_main


class RecordingApi(HfApi):
    """The real client with its two network calls replaced by recorders."""

    def __init__(self):
        super().__init__(token="hf_test")
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        files = sorted(
            str(p.relative_to(folder))
            for p in folder.rglob("*")
            if p.is_file()
            and any(
                fnmatch.fnmatch(str(p.relative_to(folder)), pat) for pat in kwargs["allow_patterns"]
            )
        )
        self.calls.append(("upload_folder", kwargs["repo_id"], {**kwargs, "files": files}))
        return "https://huggingface.co/datasets/org/name/commit/abc"


def test_card_has_configs_counts_generators_and_citation(reference_build):
    card = dataset_card(reference_build, license="cc-by-4.0")
    assert card.startswith("---\nlicense: cc-by-4.0\n")
    for split in ("pairs", "negatives", "images"):
        assert f"- config_name: {split}" in card and f"path: {split}/shard-*.arrow" in card
    assert "| pairs | authentic | real |" in card and "| negatives | inpainted | flux |" in card
    assert "dpgen-tiny/sd21-inpaint" in card and "StableDiffusionInpaintPipeline" in card
    assert "@inproceedings{giakoumoglou2026diffusionprint" in card
    assert "pairing formulas hold: True" in card


def test_publish_creates_the_repo_and_uploads_the_build_without_the_ledger(
    reference_build, tmp_path
):
    import shutil

    out = tmp_path / "b"
    shutil.copytree(reference_build, out)
    api = RecordingApi()
    result = publish(out, "org/name", private=True, api=api)
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][2] == {"repo_type": "dataset", "private": True, "exist_ok": True}
    upload = api.calls[1][2]
    assert upload["repo_type"] == "dataset" and upload["allow_patterns"] == PUBLISHED
    files = upload["files"]
    assert "README.md" in files and "provenance.json" in files and "dataset_dict.json" in files
    assert "pairs/shard-00000.arrow" in files and "pairs/state.json" in files
    assert not [f for f in files if f.startswith("ledger/") or f == "build.json"]
    assert result["url"].endswith("/commit/abc")


def test_info_json_reports_counts(reference_build, capsys):
    assert dpgen_main(["info", str(reference_build), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["formulas_hold"] is True
    assert counts["pairs"]["rows"] == counts["expected"]["pairs"]
