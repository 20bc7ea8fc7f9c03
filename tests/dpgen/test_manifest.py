import pytest
import yaml

from dpgen.manifest import (
    MANIFEST_DIR,
    ManifestError,
    available_generators,
    common_multiple,
    load_manifest,
    resolve_generators,
)


def test_every_shipped_manifest_loads_with_real_hub_ids():
    specs = {n: load_manifest(p) for n, p in available_generators().items()}
    assert {"sd21", "sdxl", "flux", "flux-fill", "tiny-sd21", "tiny-sdxl", "tiny-flux"} <= set(
        specs
    )
    assert specs["sd21"].inpaint.checkpoint == "stabilityai/stable-diffusion-2-inpainting"
    assert specs["sdxl"].inpaint.checkpoint == "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
    assert specs["flux-fill"].inpaint.pipeline == "FluxFillPipeline"
    assert specs["flux"].strength is None  # TGIF passed none: FluxInpaint's default applies
    assert {s.label for n, s in specs.items() if n.startswith("tiny-")} == {"sd21", "sdxl", "flux"}


def test_resolve_keeps_order_and_common_multiple():
    specs = resolve_generators("tiny-sd21, tiny-flux")
    assert [s.name for s in specs] == ["tiny-sd21", "tiny-flux"]
    assert common_multiple(specs) == 16


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"colour": "blue"}, r"unknown key\(s\) \['colour'\]"),
        ({"dtype": "float8"}, "dtype 'float8'"),
        ({"steps": [5, 2]}, "steps"),
        ({"steps": 3}, "must be a list"),
        ({"resolution": 500}, "not a positive multiple"),
        ({"inpaint": {"checkpoint": "x", "pipeline": "y", "extra": 1}}, "inpaint: unknown key"),
    ],
)
def test_bad_manifest_names_the_file_and_the_problem(tmp_path, edit, message):
    data = yaml.safe_load((MANIFEST_DIR / "tiny-sd21.yaml").read_text())
    data.update(edit)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError, match=message) as err:
        load_manifest(path)
    assert str(path) in str(err.value)


def test_unknown_or_repeated_generator():
    with pytest.raises(ManifestError, match="unknown generator 'sd3'; known: "):
        resolve_generators("sd21,sd3")
    with pytest.raises(ManifestError, match="listed twice"):
        resolve_generators("sd21,sd21")
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_manifest("/nonexistent/x.yaml")
