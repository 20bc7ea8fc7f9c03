import pytest
import yaml

from dpgen.manifest import (
    MANIFEST_DIR,
    ManifestError,
    available_generators,
    common_multiple,
    effective_steps,
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
        # settings a pipeline would refuse or silently ignore
        ({"steps": [2, 10], "strength": 0.3}, r"strength 0.3 leaves .* no denoising step at 2"),
        ({"guidance": [0.5, 5.0]}, "below 1 turns classifier-free guidance off"),
        ({"resolution": 260}, "not a positive multiple of size_multiple 8"),
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


def test_effective_steps_follow_each_pipeline(tmp_path):
    assert effective_steps("StableDiffusionInpaintPipeline", 10, 0.15) == 1
    assert effective_steps("StableDiffusionInpaintPipeline", 3, 0.3) == 0
    assert effective_steps("FluxInpaintPipeline", 2, 0.6) == 2  # TGIF's flux: default strength
    assert effective_steps("FluxInpaintPipeline", 3, 0.2) == 1
    data = yaml.safe_load((MANIFEST_DIR / "flux.yaml").read_text())
    data.update(guidance=[3.5, 3.5])
    (tmp_path / "flux.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError, match="flux.yaml: guidance .* FLUX.1 schnell is guidance"):
        load_manifest(tmp_path / "flux.yaml")


def test_unknown_or_repeated_generator():
    with pytest.raises(ManifestError, match="unknown generator 'sd3'; known: "):
        resolve_generators("sd21,sd3")
    with pytest.raises(ManifestError, match="listed twice"):
        resolve_generators("sd21,sd21")
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_manifest("/nonexistent/x.yaml")
