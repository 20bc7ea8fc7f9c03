"""Fixtures for dpgen: small manifests over the real tiny pipelines, and one reference build."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dpgen.build import BuildConfig, RoundtripConfig, build
from dpgen.manifest import MANIFEST_DIR


@pytest.fixture(scope="session")
def small_manifests(tmp_path_factory) -> list[str]:
    """tiny-sd21 and tiny-flux at 256 px (the shipped ones work at 512): YAML paths."""
    folder = tmp_path_factory.mktemp("manifests")
    paths = []
    for name in ("tiny-sd21", "tiny-flux"):
        data = yaml.safe_load((MANIFEST_DIR / f"{name}.yaml").read_text())
        data.update(resolution=256, steps=[2, 2])
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        paths.append(str(path))
    return paths


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
def roundtrip_build(tmp_path_factory, small_manifests) -> Path:
    """A `dpgen roundtrip` build of one photograph: authentic groups only, no negatives."""
    out = tmp_path_factory.mktemp("roundtrip") / "build"
    build(_small_config(out, small_manifests, mode="roundtrip", num_images=1))
    return out
