"""``dpgen plan``: how much GPU memory each generator needs, and the offload that makes it fit.

Parameters are counted exactly from each checkpoint's published component configs, on the
``meta`` device (`dpgen.architectures.empty_models`): nothing is downloaded or allocated, so a plan
of SD 2.1, SDXL and FLUX.1 takes seconds on a CPU. Resident bytes are parameters times the size
of the manifest's dtype (2 for float16 / bfloat16); buffers are a few KB and not counted.

A build runs generator-major (`dpgen.schedule`: all of one generator's calls, then the next):
at most one generator is resident, and within its turn its text-to-image pipeline is released
before its inpainting pipeline loads, unless both use one checkpoint (FLUX.1 schnell), which is
then held once (`dpgen.pipelines.Generator` shares its modules). So one checkpoint's models are
resident at a time.

Peak GPU memory of one generator, per offload mode (diffusers' names):

- ``none``: every module resident, plus the largest activation of one call.
- ``model`` (``enable_model_cpu_offload``): one model on the GPU at a time, so the largest
  model plus its own activations.
- ``sequential`` (``enable_sequential_cpu_offload``): one leaf module at a time (the largest,
  `dpgen.architectures.largest_leaf`) plus the largest activation. Slowest: every weight
  crosses the PCIe bus at every step.

Activations are estimated per output pixel of the working resolution (the manifest's
``resolution`` squared, an upper bound since both sides are at most it), times the batch size:
`VAE_BYTES_PER_PIXEL` for the VAE (its decoder holds a few 256- and 128-channel maps at full
resolution; doubled in float32 when an SDXL pipeline upcasts a ``force_upcast`` VAE) and
`DENOISER_BYTES_PER_PIXEL` for the UNet / transformer (latents are 8x smaller per side; attention
runs in PyTorch's memory-efficient SDPA). Text encoders' activations are a few MB. These
constants are estimates to check against a GPU (peak memory per offload mode).

A mode fits when ``peak * (1 + FRAGMENTATION) + WORKSPACE_BYTES`` is at most the free memory
(`choose_offload`). `--gpu-memory` is a card's total in GiB; the CUDA context takes
`CUDA_CONTEXT_BYTES` of it before anything loads. On a 24 GiB card this gives FLUX.1
``sequential``: its transformer alone is 22.2 GiB in bfloat16, and diffusers' maintainers report
that model offload of FLUX in bfloat16 runs out of memory on 24 GB cards
(huggingface/diffusers#11922, #13776).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dpgen.manifest import CONFIG_DIR, GeneratorSpec, resolve_generators
from dpgen.options import OptionError, Options, option

GIB = 1024**3
#: Offload modes from least to most offloading (diffusers' `enable_*_cpu_offload`).
OFFLOAD_MODES = ("none", "model", "sequential")
#: VAE working memory per output pixel per image, at 2 bytes per value (float32: twice).
VAE_BYTES_PER_PIXEL = 2048
#: Denoiser (UNet / transformer) working memory per output pixel per image, CFG included, at 2
#: bytes per value (float32: twice).
DENOISER_BYTES_PER_PIXEL = 512
#: Allocator fragmentation, as a fraction of the peak.
FRAGMENTATION = 0.05
#: cuBLAS / cuDNN workspaces and kernels' temporaries.
WORKSPACE_BYTES = GIB
#: GPU memory the CUDA context takes before anything is loaded (subtracted from --gpu-memory).
CUDA_CONTEXT_BYTES = GIB // 2
#: Components whose activations scale as `VAE_BYTES_PER_PIXEL` / `DENOISER_BYTES_PER_PIXEL`.
VAE_NAMES = ("vae",)
DENOISER_NAMES = ("unet", "transformer")


@dataclass(kw_only=True)
class PlanConfig(Options):
    """``dpgen plan``: parameters, resident bytes and offload per generator, without weights."""

    generators: list[str] = option(
        ["sd21", "sdxl", "flux"], help="manifest names or YAML paths, comma-separated"
    )
    gpu_memory: float | None = option(
        None,
        help="total GPU memory in GiB to plan for (24 for an RTX 4090); default: this "
        "machine's free GPU memory, or no offload choice without a GPU",
    )
    batch_size: int = option(1, help="images per pipeline call (activations grow with it)")
    json: bool = option(False, help="print the plan as JSON (sizes in bytes)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gpu_memory is not None and self.gpu_memory <= 0:
            raise OptionError(f"gpu_memory must be > 0 GiB, got {self.gpu_memory}")
        if self.batch_size < 1:
            raise OptionError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class ComponentPlan:
    """One model of a checkpoint.

    Attributes:
        name: the pipeline attribute (``unet``, ``text_encoder_2``, ...).
        class_name: its class, e.g. ``T5EncoderModel``.
        parameters: exact count, tied tensors once.
        bytes: resident size at the generator's dtype.
        largest_leaf_bytes: the largest module holding parameters directly (sequential offload).
        activation_bytes: estimated working memory of its part of one call.
    """

    name: str
    class_name: str
    parameters: int
    bytes: int
    largest_leaf_bytes: int
    activation_bytes: int


@dataclass(frozen=True)
class CheckpointPlan:
    """The models of one checkpoint and the roles (``text2image``, ``inpaint``) that use it."""

    checkpoint: str
    roles: tuple[str, ...]
    configs: str
    components: tuple[ComponentPlan, ...]

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.components)


@dataclass(frozen=True)
class GeneratorPlan:
    """What one generator needs on the GPU while it is the resident one."""

    name: str
    dtype: str
    resolution: int
    batch_size: int
    checkpoints: tuple[CheckpointPlan, ...]

    @property
    def components(self) -> list[ComponentPlan]:
        return [c for ck in self.checkpoints for c in ck.components]

    @property
    def parameters(self) -> int:
        return sum(c.parameters for c in self.components)

    @property
    def weight_bytes(self) -> int:
        """Weights of every module of both pipelines (a shared checkpoint once)."""
        return sum(c.bytes for c in self.components)

    @property
    def resident_bytes(self) -> int:
        """Weights resident at once during the generator's turn: its largest checkpoint."""
        return max(ck.bytes for ck in self.checkpoints)

    @property
    def inpaint_bytes(self) -> int:
        """Weights of the inpainting pipeline alone."""
        return sum(ck.bytes for ck in self.checkpoints if "inpaint" in ck.roles)

    def peak_bytes(self, mode: str) -> int:
        """Estimated peak GPU memory under offload ``mode`` (module docstring)."""
        comps = self.components
        activation = max(c.activation_bytes for c in comps)
        if mode == "none":
            return max(
                ck.bytes + max(c.activation_bytes for c in ck.components) for ck in self.checkpoints
            )
        if mode == "model":
            return max(c.bytes + c.activation_bytes for c in comps)
        if mode == "sequential":
            return max(c.largest_leaf_bytes for c in comps) + activation
        raise ValueError(f"offload mode {mode!r} is not one of {OFFLOAD_MODES}")

    def need_bytes(self, mode: str) -> int:
        """Free GPU memory ``mode`` needs: its peak with fragmentation and workspaces."""
        return math.ceil(self.peak_bytes(mode) * (1 + FRAGMENTATION)) + WORKSPACE_BYTES


def choose_offload(plan: GeneratorPlan, free_bytes: int) -> str:
    """The least offload under which ``plan`` fits in ``free_bytes`` of free GPU memory.

    Args:
        plan: the generator's plan (`plan_generator`).
        free_bytes: free memory of the device, e.g. ``torch.cuda.mem_get_info()[0]``.

    Returns:
        ``"none"``, ``"model"`` or ``"sequential"``; ``"sequential"`` also when nothing fits
        (compare ``plan.need_bytes("sequential")`` with ``free_bytes`` to warn).
    """
    for mode in OFFLOAD_MODES:
        if plan.need_bytes(mode) <= free_bytes:
            return mode
    return OFFLOAD_MODES[-1]


def _activation_bytes(spec: GeneratorSpec, pipeline: str, name: str, model, batch: int) -> int:
    """Estimated working memory of ``model``'s part of one call (module docstring)."""
    value_bytes = torch.empty((), dtype=getattr(torch, spec.dtype)).element_size()
    pixels = spec.resolution**2 * batch
    if name in DENOISER_NAMES:
        return pixels * DENOISER_BYTES_PER_PIXEL * value_bytes // 2
    if name not in VAE_NAMES:
        return 0
    # SDXL pipelines run a force_upcast VAE in float32 when the pipeline is in float16: float32
    # activations, and its weights grow from 2 to 4 bytes each.
    if (
        pipeline.startswith("StableDiffusionXL")
        and spec.dtype == "float16"
        and bool(getattr(model.config, "force_upcast", False))
    ):
        return pixels * VAE_BYTES_PER_PIXEL * 2 + sum(p.numel() for p in model.parameters()) * 2
    return pixels * VAE_BYTES_PER_PIXEL * value_bytes // 2


def _checkpoint_plan(spec: GeneratorSpec, roles: tuple[str, ...], batch: int) -> CheckpointPlan:
    # Imported here: `dpgen plan --help` and the option tests need no diffusers import.
    from dpgen.architectures import config_folder, empty_models, largest_leaf, parameter_count

    folder = config_folder(spec, roles[0])
    size = torch.empty((), dtype=getattr(torch, spec.dtype)).element_size()
    pipelines = [getattr(spec, r).pipeline for r in roles]
    components = []
    for name, model in empty_models(folder).items():
        count = parameter_count(model)
        act = max(_activation_bytes(spec, p, name, model, batch) for p in pipelines)
        components.append(
            ComponentPlan(
                name, type(model).__name__, count, count * size, largest_leaf(model) * size, act
            )
        )
    checkpoint = getattr(spec, roles[0]).checkpoint
    return CheckpointPlan(checkpoint, roles, _shown(folder), tuple(components))


def _shown(folder: Path) -> str:
    """A config folder relative to the repository when it ships there."""
    try:
        return str(folder.relative_to(CONFIG_DIR.parent.parent))
    except ValueError:
        return str(folder)


def plan_generator(spec: GeneratorSpec, batch_size: int = 1) -> GeneratorPlan:
    """Count ``spec``'s models from their configs and estimate its memory.

    Raises:
        ManifestError: a checkpoint without configs (a Hub id and no ``configs`` key).
    """
    roles: dict[str, list[str]] = {}
    for role in ("text2image", "inpaint"):
        ref = getattr(spec, role)
        if ref is not None:
            roles.setdefault(ref.checkpoint, []).append(role)
    checkpoints = tuple(_checkpoint_plan(spec, tuple(r), batch_size) for r in roles.values())
    return GeneratorPlan(spec.name, spec.dtype, spec.resolution, batch_size, checkpoints)


@dataclass(frozen=True)
class Plan:
    """The plan of a build's generators, and the free memory it was made for (if any)."""

    generators: tuple[GeneratorPlan, ...]
    free_bytes: int | None = None

    @property
    def schedule_peak(self) -> tuple[str, int]:
        """``(generator, bytes)``: the generator-major schedule's peak without offload."""
        peak = max(self.generators, key=lambda g: g.peak_bytes("none"))
        return peak.name, peak.peak_bytes("none")

    @property
    def all_inpaint_resident_bytes(self) -> int:
        """Weights if every generator's inpainting pipeline were resident at once."""
        return sum(g.inpaint_bytes for g in self.generators)

    def offloads(self) -> dict[str, str]:
        """Each generator's offload mode for `free_bytes` (empty without it)."""
        if self.free_bytes is None:
            return {}
        return {g.name: choose_offload(g, self.free_bytes) for g in self.generators}

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain data; sizes in bytes."""
        offloads = self.offloads()
        generators = []
        for g in self.generators:
            entry = {
                "name": g.name, "dtype": g.dtype, "resolution": g.resolution,
                "batch_size": g.batch_size, "parameters": g.parameters,
                "weight_bytes": g.weight_bytes, "resident_bytes": g.resident_bytes,
                "inpaint_bytes": g.inpaint_bytes,
                "peak_bytes": {m: g.peak_bytes(m) for m in OFFLOAD_MODES},
                "need_bytes": {m: g.need_bytes(m) for m in OFFLOAD_MODES},
                "checkpoints": [
                    {"checkpoint": ck.checkpoint, "roles": list(ck.roles), "configs": ck.configs,
                     "bytes": ck.bytes, "components": {c.name: _component_dict(c) for c in ck.components}}
                    for ck in g.checkpoints
                ],
            }  # fmt: skip
            if offloads:
                entry["offload"] = offloads[g.name]
            generators.append(entry)
        name, peak = self.schedule_peak
        data = {
            "generators": generators,
            "schedule_peak": {"generator": name, "bytes": peak},
            "all_inpaint_resident_bytes": self.all_inpaint_resident_bytes,
            "free_bytes": self.free_bytes,
        }
        if offloads:
            data["schedule_peak_with_offload_bytes"] = max(
                g.peak_bytes(offloads[g.name]) for g in self.generators
            )
        return data


def _component_dict(c: ComponentPlan) -> dict[str, Any]:
    return {
        "class": c.class_name,
        "parameters": c.parameters,
        "bytes": c.bytes,
        "largest_leaf_bytes": c.largest_leaf_bytes,
        "activation_bytes": c.activation_bytes,
    }


def free_memory(gpu_memory_gib: float | None) -> int | None:
    """Free bytes to plan for: ``--gpu-memory`` less the CUDA context, else this GPU's free memory."""
    if gpu_memory_gib is not None:
        return int(gpu_memory_gib * GIB) - CUDA_CONTEXT_BYTES
    if torch.cuda.is_available():
        return torch.cuda.mem_get_info()[0]
    return None


def make_plan(config: PlanConfig) -> Plan:
    """The plan `dpgen plan` prints.

    Raises:
        ManifestError: an unknown generator, or one without configs.
    """
    specs = resolve_generators(config.generators)
    plans = tuple(plan_generator(s, config.batch_size) for s in specs)
    return Plan(plans, free_memory(config.gpu_memory))


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def format_plan(plan: Plan) -> str:
    """The plan as a text table: GB are 10^9 bytes (as parameter sizes are published)."""
    offloads = plan.offloads()
    lines = []
    for g in plan.generators:
        lines.append(f"{g.name}  ({g.dtype}, {g.resolution} px, batch {g.batch_size})")
        for ck in g.checkpoints:
            lines.append(f"  {ck.checkpoint}  [{', '.join(ck.roles)}]")
            lines += [
                f"    {c.name:<16}{c.class_name:<30}{c.parameters:>16,}  {_gb(c.bytes):>10}"
                for c in ck.components
            ]
        peaks = ", ".join(f"{m} {_gb(g.peak_bytes(m))}" for m in OFFLOAD_MODES)
        lines.append(f"  resident {_gb(g.resident_bytes)}; peak: {peaks}")
        if offloads:
            lines.append(
                f"  offload: {offloads[g.name]} (needs {_gb(g.need_bytes(offloads[g.name]))})"
            )
    name, peak = plan.schedule_peak
    lines.append(
        f"schedule peak (one generator resident at a time, no offload): {name} {_gb(peak)}"
    )
    lines.append(
        f"all inpainting pipelines resident at once: {_gb(plan.all_inpaint_resident_bytes)}"
    )
    if plan.free_bytes is not None:
        lines.append(f"planned for {plan.free_bytes / GIB:.1f} GiB free GPU memory")
    return "\n".join(lines)
