"""The dataset card and `dpgen publish`, checked at the network boundary (no request is sent)."""

import fnmatch
import json
import shutil
from pathlib import Path

import datasets
import pytest
import yaml
from huggingface_hub import CommitInfo, HfApi

from dpgen.card import PUBLISHED, PublishConfig, dataset_card, publish
from dpgen.cli import main as dpgen_main
from dpgen.info import load_build
from dpgen.options import OptionError

URL = "https://huggingface.co/datasets/org/name"


def _allowed(folder: Path, patterns: list[str]) -> list[str]:
    """The files of ``folder`` huggingface_hub uploads for ``allow_patterns`` (fnmatch on paths)."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and any(fnmatch.fnmatch(str(p.relative_to(folder)), pat) for pat in patterns)
    )


class RecordingApi(HfApi):
    """The real client with its network calls replaced by recorders."""

    def __init__(self):
        super().__init__(token="hf_test")
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return URL

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        files = _allowed(Path(kwargs["folder_path"]), kwargs["allow_patterns"])
        self.calls.append(("upload_folder", kwargs["repo_id"], {**kwargs, "files": files}))
        pr = f"{URL}/discussions/1" if kwargs.get("create_pr") else None
        return CommitInfo(f"{URL}/commit/abc", "message", "", "abc", pr_url=pr)


class LargeFolderApi(RecordingApi):
    """A client of huggingface_hub 0.25-1.x, which has the separate resumable uploader."""

    def upload_large_folder(self, **kwargs):
        files = _allowed(Path(kwargs["folder_path"]), kwargs["allow_patterns"])
        self.calls.append(("upload_large_folder", kwargs["repo_id"], {**kwargs, "files": files}))


def _copy(build: Path, tmp_path: Path) -> Path:
    out = tmp_path / "b"
    shutil.copytree(build, out)
    return out


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
    out = _copy(reference_build, tmp_path)
    api = RecordingApi()
    result = publish(PublishConfig(dir=out, repo_id="org/name", private=True), api=api)
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][2] == {"repo_type": "dataset", "private": True, "exist_ok": True}
    upload = api.calls[1][2]
    assert upload["repo_type"] == "dataset" and upload["allow_patterns"] == PUBLISHED
    assert upload["revision"] is None and upload["create_pr"] is False
    files = upload["files"]
    assert "README.md" in files and "provenance.json" in files and "dataset_dict.json" in files
    assert "pairs/shard-00000.arrow" in files and "pairs/state.json" in files
    assert not [f for f in files if f.startswith("ledger/") or f == "build.json"]
    assert result["url"] == f"{URL}/commit/abc"


def test_publish_to_a_branch_creates_it_first(reference_build, tmp_path):
    api = RecordingApi()
    config = PublishConfig(dir=_copy(reference_build, tmp_path), repo_id="org/name", revision="v2")
    publish(config, api=api)
    assert [c[0] for c in api.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert api.calls[1][2] == {"branch": "v2", "repo_type": "dataset", "exist_ok": True}
    assert api.calls[2][2]["revision"] == "v2"


def test_publish_as_a_pull_request_prints_its_url(reference_build, tmp_path, capsys):
    out = _copy(reference_build, tmp_path)
    api = RecordingApi()
    result = publish(PublishConfig(dir=out, repo_id="org/name", create_pr=True), api=api)
    assert api.calls[-1][2]["create_pr"] is True and result["url"] == f"{URL}/discussions/1"
    with pytest.raises(OptionError, match="create_pr"):
        PublishConfig(dir=out, repo_id="org/name", create_pr=True, revision="v2")


def test_a_large_build_uploads_with_upload_large_folder_where_the_client_has_it(
    reference_build, tmp_path
):
    out = _copy(reference_build, tmp_path)
    config = PublishConfig(dir=out, repo_id="org/name", revision="v2", large_upload_gb=0)
    api = LargeFolderApi()
    result = publish(config, api=api)
    assert [c[0] for c in api.calls] == ["create_repo", "create_branch", "upload_large_folder"]
    large = api.calls[-1][2]
    # no commit message or PR exist in its signature; the same files go up
    assert "commit_message" not in large and "create_pr" not in large
    assert large["repo_type"] == "dataset" and large["revision"] == "v2"
    small = RecordingApi()
    publish(PublishConfig(dir=out, repo_id="org/name", revision="v2"), api=small)
    assert large["files"] == small.calls[-1][2]["files"]
    assert result["url"] == f"{URL}/tree/v2"
    # a pull request, or a client without it (huggingface_hub >= 2), takes upload_folder
    pr = PublishConfig(dir=out, repo_id="org/name", create_pr=True, large_upload_gb=0)
    publish(pr, api=(api := LargeFolderApi()))
    assert api.calls[-1][0] == "upload_folder"
    publish(
        PublishConfig(dir=out, repo_id="org/name", large_upload_gb=0), api=(api := RecordingApi())
    )
    assert api.calls[-1][0] == "upload_folder"


def _card_configs(folder: Path) -> list[str]:
    text = (folder / "README.md").read_text()
    header = yaml.safe_load(text.split("---\n")[1])
    return [c["config_name"] for c in header["configs"]]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["inpaint", "roundtrip"])
def test_every_config_the_card_lists_loads_from_the_published_files(
    kind, reference_build, roundtrip_build, tmp_path
):
    build = _copy(reference_build if kind == "inpaint" else roundtrip_build, tmp_path)
    api = RecordingApi()
    publish(PublishConfig(dir=build, repo_id="org/name"), api=api)
    repo = tmp_path / "repo"  # exactly what the upload would hold
    for name in api.calls[-1][2]["files"]:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(build / name, repo / name)
    configs = _card_configs(repo)
    local = load_build(build)
    for config in configs:
        # a cache of its own: the processed-dataset cache is keyed by path, not by content
        loaded = datasets.load_dataset(
            str(repo), config, split="train", cache_dir=str(tmp_path / "cache")
        )
        assert len(loaded) == len(local[config]), config
        assert loaded.features == local[config].features, config
    # every split with rows is a config; the roundtrip build's empty negatives is not
    assert configs == [s for s in ("pairs", "negatives", "images") if len(local[s]) > 0]
    assert ("negatives" in configs) == (kind == "inpaint")
    assert set(datasets.load_from_disk(str(repo))) == {"pairs", "negatives", "images"}


def test_info_json_reports_counts(reference_build, capsys):
    assert dpgen_main(["info", str(reference_build), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["formulas_hold"] is True
    assert counts["pairs"]["rows"] == counts["expected"]["pairs"]
