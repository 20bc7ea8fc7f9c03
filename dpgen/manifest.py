"""Generator manifests: one YAML file per generator, loaded into `GeneratorSpec`.

A manifest names the checkpoints and pipeline classes a generator is loaded with and the
settings its inpainting calls draw from (paper Sec. 3.1; TGIF's ranges, see docs/generators.md).
Unknown keys are rejected so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dpgen.errors import InputError

#: Folder of the manifests shipped with the toolkit (`manifests/generators/*.yaml`).
MANIFEST_DIR = Path(__file__).resolve().parent.parent / "manifests" / "generators"

#: Folder of the real checkpoints' component configs (`manifests/configs/<configs>/<checkpoint>/`),
#: which a manifest names with its ``configs`` key (see manifests/configs/README.md).
CONFIG_DIR = MANIFEST_DIR.parent / "configs"

DTYPES = ("float32", "float16", "bfloat16")

#: diffusers' default ``strength`` of each inpainting pipeline, used when a manifest sets none.
DEFAULT_STRENGTH = {
    "StableDiffusionInpaintPipeline": 1.0,
    "StableDiffusionXLInpaintPipeline": 0.9999,
    "FluxInpaintPipeline": 0.6,
    "FluxFillPipeline": 1.0,
}


def effective_steps(pipeline: str, steps: int, strength: float) -> int:
    """Denoising steps a diffusers inpainting pipeline runs for ``steps`` at ``strength``.

    SD / SDXL (``get_timesteps``): ``min(int(steps * strength), steps)``; Flux:
    ``steps - int(max(steps - steps * strength, 0))``. Zero means the call fails (SD) or
    returns the source untouched.
    """
    if pipeline.startswith("Flux"):
        return steps - int(max(steps - steps * strength, 0))
    return min(int(steps * strength), steps)


class ManifestError(InputError):
    """A manifest file is missing, malformed, or has an unknown key or a bad value."""


@dataclass(frozen=True)
class PipelineRef:
    """A diffusers pipeline to load with ``getattr(diffusers, pipeline).from_pretrained(checkpoint)``.

    Attributes:
        checkpoint: a Hub repo id, a local folder, or ``dpgen-tiny/<name>`` for a tiny
            random-weight pipeline that dpgen builds once into its cache (see `dpgen.tiny`).
        pipeline: the diffusers class name, e.g. ``StableDiffusionInpaintPipeline``.
    """

    checkpoint: str
    pipeline: str


@dataclass(frozen=True)
class GeneratorSpec:
    """Everything dpgen needs to know about one generator.

    Attributes:
        name: manifest name, used on the command line (``--generators sd21,sdxl``).
        label: class label of the generator-aware head (paper: real, sd21, sdxl, flux);
            tiny generators reuse the label of the family they imitate.
        inpaint: the inpainting pipeline.
        text2image: the text-to-image pipeline that makes generated source images, if any.
        resolution: longest side, in pixels, that source images are resized down to.
        size_multiple: both sides are cropped to a multiple of it (8 for SD, 16 for Flux:
            Flux silently resizes other sizes and breaks mask alignment).
        steps: inclusive range the number of denoising steps is drawn from, per image.
        guidance: range the guidance scale is drawn from, per image.
        strength: inpainting strength; ``None`` keeps the pipeline's default (TGIF passed none to
            the Flux pipelines).
        dtype: torch dtype on CUDA; CPU always runs float32.
        description: free text for the dataset card.
        configs: folder of the checkpoints' published component configs (no weights), relative
            to `CONFIG_DIR` unless absolute; it holds one diffusers-style folder per checkpoint,
            named like the checkpoint's last path part (``stable-diffusion-2-1``). Used to count
            parameters without weights (`dpgen.plan`) and to build real-size random-weight
            pipelines (`dpgen.random_weights`). ``None`` for tiny and local checkpoints, whose
            own folders have the configs.
        source_field: the per-sample field of a generated-image dataset that names the model
            which made each image (e.g. Dragon's ``model.txt``); ``--generated-field`` overrides.
        source_models: the values of that field that mean "made by this generator", e.g. the
            strings Dragon's ``model.txt`` uses for its model (see docs/dpgen.md); samples with
            any other value are never used as this generator's images.
    """

    name: str
    label: str
    inpaint: PipelineRef
    text2image: PipelineRef | None = None
    resolution: int = 512
    size_multiple: int = 8
    steps: tuple[int, int] = (10, 50)
    guidance: tuple[float, float] = (1.0, 10.0)
    strength: float | None = None
    dtype: str = "float16"
    description: str = ""
    configs: str | None = None
    source_field: str = ""
    source_models: tuple[str, ...] = ()
    source: str = field(default="", compare=False)  # the YAML file it came from

    def __post_init__(self) -> None:
        where = self.source or self.name
        if self.dtype not in DTYPES:
            raise ManifestError(f"{where}: dtype {self.dtype!r} is not one of {DTYPES}")
        if self.size_multiple <= 0 or self.resolution % self.size_multiple:
            raise ManifestError(
                f"{where}: resolution {self.resolution} is not a positive multiple of "
                f"size_multiple {self.size_multiple}"
            )
        if not 1 <= self.steps[0] <= self.steps[1]:
            raise ManifestError(f"{where}: steps {list(self.steps)} is not a range [lo, hi]")
        if not 0 <= self.guidance[0] <= self.guidance[1]:
            raise ManifestError(f"{where}: guidance {list(self.guidance)} is not a range")
        if self.strength is not None and not 0 < self.strength <= 1:
            raise ManifestError(f"{where}: strength {self.strength} is not in (0, 1]")
        self._check_pipeline_use(where)

    def _check_pipeline_use(self, where: str) -> None:
        """Settings the inpainting pipeline would refuse, or silently ignore."""
        pipeline = self.inpaint.pipeline
        strength = self.strength if self.strength is not None else DEFAULT_STRENGTH.get(pipeline)
        if strength is not None and effective_steps(pipeline, self.steps[0], strength) < 1:
            raise ManifestError(
                f"{where}: steps {list(self.steps)} with strength {strength} leaves "
                f"{pipeline} no denoising step at {self.steps[0]} steps; raise steps or strength"
            )
        lo, hi = self.guidance
        if pipeline.startswith("StableDiffusion") and lo < 1 and hi > 0:
            raise ManifestError(
                f"{where}: guidance {list(self.guidance)}: below 1 turns classifier-free "
                f"guidance off in {pipeline}; use values >= 1, or [0, 0] for no guidance"
            )
        if "flux.1-schnell" in self.inpaint.checkpoint.lower() and hi > 0:
            raise ManifestError(
                f"{where}: guidance {list(self.guidance)}: FLUX.1 schnell is guidance-distilled "
                "and ignores guidance_scale; set guidance: [0.0, 0.0]"
            )

    def to_dict(self) -> dict[str, Any]:
        """The resolved manifest as plain data (for provenance and cards)."""
        data = dataclasses.asdict(self)
        data.pop("source")
        return data


def _from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown and missing keys."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ManifestError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    kwargs = dict(data)
    for key in ("inpaint", "text2image"):
        if isinstance(kwargs.get(key), dict):
            kwargs[key] = _from_dict(PipelineRef, kwargs[key], f"{where}: {key}")
    if "source_models" in kwargs:
        value = kwargs["source_models"]
        if not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
            raise ManifestError(f"{where}: source_models must be a list of strings, got {value!r}")
        kwargs["source_models"] = tuple(value)
    for key in ("steps", "guidance"):
        if key in kwargs:
            value = kwargs[key]
            if not (isinstance(value, list) and len(value) == 2):
                raise ManifestError(f"{where}: {key} must be a list [lo, hi], got {value!r}")
            kwargs[key] = tuple(value)
    try:
        return cls(**kwargs, **({"source": where} if cls is GeneratorSpec else {}))
    except TypeError as err:  # a missing required key
        raise ManifestError(f"{where}: {err}") from None


def load_manifest(path: str | Path) -> GeneratorSpec:
    """Load one generator manifest.

    Raises:
        ManifestError: naming the file, for unreadable YAML, unknown keys or bad values.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ManifestError(f"{path}: cannot read manifest: {err}") from None
    return _from_dict(GeneratorSpec, data, str(path))


def available_generators(manifest_dir: Path = MANIFEST_DIR) -> dict[str, Path]:
    """Names of the shipped generators and their manifest files."""
    return {p.stem: p for p in sorted(manifest_dir.glob("*.yaml"))}


def resolve_generators(
    names: str | list[str], manifest_dir: Path = MANIFEST_DIR
) -> list[GeneratorSpec]:
    """Turn ``"sd21,sdxl"`` (or a list; entries may be YAML paths) into specs, in order.

    Raises:
        ManifestError: for an unknown name, listing the known ones.
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise ManifestError("no generator given")
    known = available_generators(manifest_dir)
    specs = []
    for name in names:
        if name.endswith((".yaml", ".yml")):
            specs.append(load_manifest(name))
        elif name in known:
            specs.append(load_manifest(known[name]))
        else:
            raise ManifestError(f"unknown generator {name!r}; known: {', '.join(known)}")
    if len({s.name for s in specs}) != len(specs):
        raise ManifestError(f"generator listed twice: {names}")
    return specs


def common_multiple(specs: list[GeneratorSpec]) -> int:
    """The size multiple every spec accepts (a real image is inpainted by all of them)."""
    return math.lcm(*(s.size_multiple for s in specs))


def match_generator(name: str, specs: list[GeneratorSpec], where: str) -> GeneratorSpec:
    """The spec a command-line name refers to: its manifest name, or its label (``sd21`` for
    ``tiny-sd21``) when exactly one spec of the build has that label.

    Args:
        name: as written by the user.
        specs: the build's generators.
        where: the setting, for the message (e.g. ``--generated``).

    Raises:
        ManifestError: no spec has that name or label, or several share the label.
    """
    for spec in specs:
        if spec.name == name:
            return spec
    labelled = [s for s in specs if s.label == name]
    if len(labelled) == 1:
        return labelled[0]
    names = ", ".join(f"{s.name} (label {s.label})" for s in specs)
    if labelled:
        raise ManifestError(
            f"{where}: {name!r} is the label of {[s.name for s in labelled]}; use the manifest name"
        )
    raise ManifestError(f"{where}: {name!r} names no generator of the build; generators: {names}")


def generated_locations(
    generated: dict[str, str], generated_from: str | None, specs: list[GeneratorSpec]
) -> dict[str, str]:
    """Where each generator's generated images come from, by manifest name.

    Args:
        generated: ``--generated NAME=LOCATION`` entries; NAME is a manifest name or label.
        generated_from: ``--generated-from LOCATION``, one dataset for every generator that
            ``generated`` does not name (each takes only its own samples, `GeneratorSpec.source_models`).
        specs: the build's generators, in order.

    Returns:
        manifest name -> location, in ``specs`` order; generators absent make their images with
        their text-to-image pipeline.

    Raises:
        ManifestError: an unknown or ambiguous name, or one generator named twice.
    """
    chosen: dict[str, str] = {}
    for name, location in generated.items():
        spec = match_generator(name, specs, "--generated")
        if spec.name in chosen:
            raise ManifestError(f"--generated: {spec.name} is given twice (as {name!r})")
        chosen[spec.name] = location
    out = {}
    for spec in specs:
        location = chosen.get(spec.name, generated_from)
        if location:
            out[spec.name] = location
    return out
