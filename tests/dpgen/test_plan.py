"""`dpgen plan`: exact counts without weights, the schedule's peak, and the offload choice."""

from __future__ import annotations

import json
import math

import diffusers
import pytest
import torch
import yaml

from dpgen.cli import TOOL
from dpgen.manifest import MANIFEST_DIR, resolve_generators
from dpgen.options import OptionError
from dpgen.plan import (
    FRAGMENTATION,
    GIB,
    WORKSPACE_BYTES,
    CheckpointPlan,
    ComponentPlan,
    GeneratorPlan,
    PlanConfig,
    choose_offload,
    plan_generator,
)
from dpgen.tiny import ensure_tiny


def run_plan(capsys, *args: str) -> dict:
    assert TOOL.main(["plan", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_json_counts_equal_the_loaded_pipelines(cache, capsys):
    """Every component's count in `dpgen plan --json` is that of the pipeline with its weights."""
    plan = run_plan(capsys, "--generators", "tiny-sd21,tiny-sdxl,tiny-flux", "--gpu-memory", "8")
    assert [g["name"] for g in plan["generators"]] == ["tiny-sd21", "tiny-sdxl", "tiny-flux"]
    for g in plan["generators"]:
        assert g["dtype"] == "float32" and g["offload"] == "none"
        total = 0
        for ck in g["checkpoints"]:
            real = diffusers.DiffusionPipeline.from_pretrained(ensure_tiny(ck["checkpoint"]))
            modules = {k: m for k, m in real.components.items() if isinstance(m, torch.nn.Module)}
            assert set(ck["components"]) == set(modules)
            for name, c in ck["components"].items():
                count = sum(p.numel() for p in modules[name].parameters())
                assert c["parameters"] == count, (ck["checkpoint"], name)
                assert c["bytes"] == 4 * count  # float32
                total += count
        assert g["parameters"] == total and g["weight_bytes"] == 4 * total
        # the schedule holds one checkpoint at a time (text-to-image released before inpaint)
        assert g["resident_bytes"] == max(ck["bytes"] for ck in g["checkpoints"])


def test_a_checkpoint_both_roles_use_is_counted_once(cache, tmp_path):
    data = yaml.safe_load((MANIFEST_DIR / "tiny-flux.yaml").read_text())
    data["text2image"] = {"checkpoint": data["inpaint"]["checkpoint"], "pipeline": "FluxPipeline"}
    (tmp_path / "shared.yaml").write_text(yaml.safe_dump(data))
    plan = plan_generator(resolve_generators(str(tmp_path / "shared.yaml"))[0])
    assert len(plan.checkpoints) == 1
    assert plan.checkpoints[0].roles == ("text2image", "inpaint")
    assert plan.resident_bytes == plan.inpaint_bytes == plan.checkpoints[0].bytes


def hand_plan() -> GeneratorPlan:
    """A generator of two models with round numbers (bytes)."""
    big = ComponentPlan("transformer", "X", 0, 20 * GIB, GIB // 4, GIB)
    vae = ComponentPlan("vae", "Y", 0, GIB // 8, GIB // 16, 2 * GIB)
    ck = CheckpointPlan("c", ("text2image", "inpaint"), "f", (big, vae))
    return GeneratorPlan("g", "bfloat16", 1024, 1, (ck,))


def test_peaks_per_offload_mode():
    plan = hand_plan()
    assert plan.peak_bytes("none") == 20 * GIB + GIB // 8 + 2 * GIB  # all weights + largest act
    assert plan.peak_bytes("model") == 21 * GIB  # the transformer and its own activations
    assert plan.peak_bytes("sequential") == GIB // 4 + 2 * GIB  # largest leaf + largest act
    with pytest.raises(ValueError, match="offload mode 'group'"):
        plan.peak_bytes("group")


def test_two_checkpoints_are_resident_one_at_a_time():
    t2i = ComponentPlan("unet", "X", 0, 6 * GIB, GIB // 4, GIB)
    inpaint = ComponentPlan("unet", "X", 0, 7 * GIB, GIB // 4, 2 * GIB)
    plan = GeneratorPlan("g", "float16", 1024, 1, (
        CheckpointPlan("a", ("text2image",), "f", (t2i,)),
        CheckpointPlan("b", ("inpaint",), "f", (inpaint,)),
    ))  # fmt: skip
    assert plan.weight_bytes == 13 * GIB and plan.resident_bytes == 7 * GIB
    assert plan.peak_bytes("none") == 9 * GIB  # the inpainting checkpoint and its activations


def test_choose_offload_takes_the_least_offload_that_fits():
    plan = hand_plan()

    def need(mode: str) -> int:  # the documented rule, written out
        return math.ceil(plan.peak_bytes(mode) * (1 + FRAGMENTATION)) + WORKSPACE_BYTES

    for mode in ("none", "model", "sequential"):
        assert plan.need_bytes(mode) == need(mode)
    assert choose_offload(plan, plan.need_bytes("none")) == "none"
    assert choose_offload(plan, plan.need_bytes("none") - 1) == "model"
    assert choose_offload(plan, plan.need_bytes("model") - 1) == "sequential"
    assert choose_offload(plan, 0) == "sequential"  # nothing smaller exists


@pytest.mark.parametrize(
    ("values", "message"),
    [({"gpu_memory": 0}, "gpu_memory"), ({"batch_size": 0}, "batch_size")],
)
def test_bad_settings_are_refused(values, message):
    with pytest.raises(OptionError, match=message):
        PlanConfig(**values)


def test_unknown_generator_exits_2_with_the_reason(caplog):
    assert TOOL.main(["plan", "--generators", "sd3"]) == 2
    assert "unknown generator 'sd3'" in caplog.text


@pytest.mark.slow
def test_real_generators_match_published_sizes_and_fit_24_gib(capsys):
    """Counts from the shipped configs against the published figures (shared/README.md).

    Published: SD 2 inpainting UNet 866M, OpenCLIP-H text 340M, VAE 84M; SDXL inpainting UNet
    2.57B, CLIP-L 123M, OpenCLIP-bigG 695M; FLUX.1 transformer 11.9B, T5-XXL encoder 4.76B.
    """
    plan = run_plan(capsys, "--generators", "sd21,sdxl,flux", "--gpu-memory", "24")
    inpaint = {
        g["name"]: {n: c["parameters"] for ck in g["checkpoints"] if "inpaint" in ck["roles"]
                    for n, c in ck["components"].items()}
        for g in plan["generators"]
    }  # fmt: skip
    published = {
        "sd21": {"unet": 866e6, "text_encoder": 340e6, "vae": 84e6},
        "sdxl": {"unet": 2.57e9, "text_encoder": 123e6, "text_encoder_2": 695e6, "vae": 84e6},
        "flux": {"transformer": 11.9e9, "text_encoder_2": 4.76e9, "text_encoder": 123e6},
    }
    for name, counts in published.items():
        for component, count in counts.items():
            assert inpaint[name][component] == pytest.approx(count, rel=0.005), (name, component)
    flux = plan["generators"][2]
    assert plan["schedule_peak"]["generator"] == "flux"
    assert 30e9 <= plan["schedule_peak"]["bytes"] <= 40e9
    assert plan["all_inpaint_resident_bytes"] == pytest.approx(43.2e9, rel=0.01)
    assert flux["resident_bytes"] == flux["inpaint_bytes"]  # schnell: one checkpoint, both roles
    assert flux["offload"] == "sequential"  # the bf16 transformer alone is 22.2 GiB
    assert [g["offload"] for g in plan["generators"][:2]] == ["none", "none"]
