"""One inpainting call of a real-size generator with random weights, offline: time and peak RSS.

The pipeline is built from the manifest's shipped configs (`dpgen.random_weights`) through the
build's own entry point, ``Generator(spec, random_weights=True)``, so this runs with nothing
downloaded. On a CPU it runs in float32 (as `Generator` does); with ``--device cuda`` in the
manifest's dtype, and the peak GPU memory is printed too.

    python benchmarks/bench_random_weights.py [--generator sd21] [--size 512] [--steps 2]
        [--guidance 7.5] [--device cpu]

Prints ``build_seconds``, ``call_seconds`` (one ``Generator.inpaint`` of one image),
``parameters`` (of the inpainting pipeline's models) and ``peak_rss_gb`` (the process's maximum
resident set, `resource.getrusage`), one per line.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from PIL import Image

from dpgen.manifest import resolve_generators
from dpgen.pipelines import Generator


def source_and_mask(size: int) -> tuple[Image.Image, Image.Image]:
    """A noise image and a centred square mask (255 = inpaint) of ``size`` x ``size``."""
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = Image.new("L", (size, size))
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return Image.fromarray(pixels), mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generator", default="sd21", help="manifest with `configs`")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--guidance", type=float, default=7.5, help="> 1: classifier-free")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    spec = resolve_generators(args.generator)[0]
    gen = Generator(spec, device=args.device, random_weights=True)
    image, mask = source_and_mask(args.size)

    start = time.perf_counter()
    pipe = gen.inpaint_pipeline
    built = time.perf_counter()
    gen.inpaint([image], [mask], ["a photo"], seeds=[0], steps=args.steps, guidance=args.guidance)
    done = time.perf_counter()

    models = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    print(f"{spec.name} {spec.inpaint.pipeline}, {args.size}x{args.size}, {args.steps} steps, "
          f"guidance {args.guidance}, {args.device} {gen.dtype}, weights {gen.weights}")  # fmt: skip
    print(f"parameters {sum(p.numel() for m in models for p in m.parameters()):,}")
    print(f"build_seconds {built - start:.1f}")
    print(f"call_seconds {done - built:.1f}")
    print(f"peak_rss_gb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9:.2f}")
    if gen.device.type == "cuda":
        print(f"peak_gpu_gb {torch.cuda.max_memory_allocated() / 1e9:.2f}")


if __name__ == "__main__":
    main()
