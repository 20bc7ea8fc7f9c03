"""Fixtures for dpgen: small manifests over the real tiny pipelines, and one reference build."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dpgen import fixtures
from dpgen.build import BuildConfig, RoundtripConfig, build
from dpgen.fixtures import make_coco_fixture, make_dragon_fixture


@pytest.fixture(scope="session")
def small_manifests(tmp_path_factory) -> list[str]:
    """tiny-sd21 and tiny-flux at 256 px (the shipped ones work at 512): YAML paths."""
    return fixtures.small_manifests(
        tmp_path_factory.mktemp("manifests"), ("tiny-sd21", "tiny-flux")
    )


def _small_config(out: Path, generators: list[str], **overrides) -> BuildConfig:
    """Two demo photographs + one generated image per generator, 32-px patches on 256 px.

    ``mode="roundtrip"`` gives a `RoundtripConfig` (no inpainting settings).
    """
    roundtrip = overrides.pop("mode", "inpaint") == "roundtrip"
    settings = dict(out=out, generators=generators, num_images=2, patch_size=32, shard_size=1)
    if not roundtrip:
        settings["num_generated"] = 1
    settings.update(overrides)
    return (RoundtripConfig if roundtrip else BuildConfig)(**settings)


@pytest.fixture(scope="session")
def small_config():
    """``small_config(out, generators, **overrides) -> BuildConfig``."""
    return _small_config


@pytest.fixture(scope="session")
def reference_build(tmp_path_factory, small_manifests) -> Path:
    """An uninterrupted build that other tests compare against."""
    out = tmp_path_factory.mktemp("ref") / "build"
    build(_small_config(out, small_manifests))
    return out


@pytest.fixture(scope="session")
def dragon(tmp_path_factory) -> Path:
    """A local snapshot shaped like Dragon: the card's configs, 3 shards, 3 models interleaved."""
    return make_dragon_fixture(tmp_path_factory.mktemp("snap") / "dragon")


@pytest.fixture
def dragon_hub(dragon, tmp_path, monkeypatch) -> str:
    """The same snapshot as ``lesc-unifi/dragon`` in an offline Hub cache; returns the repo id.

    huggingface_hub reads cached files with no network (HF_HUB_OFFLINE=1, tests/conftest.py),
    so the Hub spelling runs through its real download and listing code.
    """
    import huggingface_hub

    cache = tmp_path / "hub"
    revision = "0" * 40
    repo = cache / "datasets--lesc-unifi--dragon"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(dragon, repo / "snapshots" / revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # for subprocesses
    return "lesc-unifi/dragon"


@pytest.fixture(scope="session")
def coco(tmp_path_factory) -> Path:
    """A three-image COCO val2017 root (polygons, a compressed RLE, a crowd RLE, 5 captions each)."""
    return make_coco_fixture(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="session")
def roundtrip_build(tmp_path_factory, small_manifests) -> Path:
    """A `dpgen roundtrip` build of one photograph: authentic groups only, no negatives."""
    out = tmp_path_factory.mktemp("roundtrip") / "build"
    build(_small_config(out, small_manifests, mode="roundtrip", num_images=1))
    return out
