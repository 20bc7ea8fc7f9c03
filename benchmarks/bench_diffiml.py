"""DiffIML decoder cost: one training step, and inference images/s for steps x samples x flip.

The decoder alone (`dpeval.tgif.decoders.diffiml.DiffIMLDecoder` at the paper's sizes), on
random stand-ins for a localizer's four feature maps (Lite Baseline with MiT-B2: 64/128/320/512
channels at strides 4/8/16/32): the encoder's own forward pass is not included (it runs once per
image, twice with flip, against steps x samples UNet passes of the decoder). Each figure is
repeated and reported as median and min; peak memory is CUDA's max allocated per phase on a
GPU, the process's peak RSS on a CPU (a whole-process high-water mark).

    python benchmarks/bench_diffiml.py [--size 512] [--batch 8] [--steps 8] [--samples 5]
        [--flip | --no-flip] [--repeats 3] [--amp no|bf16|fp16] [--device cuda|cpu]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch

from dpeval.tgif.decoders.diffiml import FEATURE_STRIDES, DiffIMLDecoder

MIT_B2_CHANNELS = (64, 128, 320, 512)


def features(batch: int, size: int, device: torch.device) -> list[torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(0)
    return [
        torch.randn(batch, c, size // s, size // s, generator=g, device=device)
        for c, s in zip(MIT_B2_CHANNELS, FEATURE_STRIDES, strict=True)
    ]


def square_masks(batch: int, size: int, device: torch.device) -> torch.Tensor:
    mask = torch.zeros(batch, 1, size, size, device=device)
    mask[..., size // 4 : size // 2, size // 3 : 3 * size // 4] = 1
    return mask


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> list[float]:
    fn()  # warm-up: kernels, allocator, lazy init
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (CUDA max allocated)"
    return (
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process peak RSS)"
    )


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image side (multiple of 32)")
    parser.add_argument("--batch", type=int, default=8, help="images per step / per inference call")
    parser.add_argument("--steps", type=int, default=8, help="DDIM steps at inference")
    parser.add_argument("--samples", type=int, default=5, help="ensemble size at inference")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--amp", choices=("no", "bf16", "fp16"), default="no")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    amp = (
        nullcontext()
        if args.amp == "no"
        else torch.autocast(
            device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
        )
    )
    torch.manual_seed(0)
    decoder = DiffIMLDecoder(
        feature_channels=MIT_B2_CHANNELS,
        num_inference_steps=args.steps,
        ensemble=args.samples,
        flip_tta=args.flip,
    ).to(device)
    params = sum(p.numel() for p in decoder.parameters() if p.requires_grad)
    print(
        f"DiffIML decoder ({params / 1e6:.2f}M trainable parameters) on {device}, amp {args.amp}, "
        f"{args.size}x{args.size}, batch {args.batch}, {args.repeats} repeats"
    )
    train_step(decoder, args, device, amp)
    inference(decoder, args, device, amp)


def train_step(decoder: DiffIMLDecoder, args, device: torch.device, amp) -> None:
    feats, mask = (
        features(args.batch, args.size, device),
        square_masks(args.batch, args.size, device),
    )
    optimizer = torch.optim.SGD(
        [p for p in decoder.parameters() if p.requires_grad], lr=0.005, momentum=0.9
    )
    decoder.train()

    def step() -> None:
        with amp:
            loss = decoder(feats, mask).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    reset_peak(device)
    times = timed(step, args.repeats, device)
    print(
        f"train step      : median {statistics.median(times):.4f} s, min {min(times):.4f} s; "
        f"peak {peak_memory(device)}"
    )


def inference(decoder: DiffIMLDecoder, args, device: torch.device, amp) -> None:
    images = torch.rand(args.batch, 3, args.size, args.size, device=device)
    cached = features(2 * args.batch, args.size, device)

    def encode(x: torch.Tensor) -> list[torch.Tensor]:  # stand-in for the localizer's encoder
        return [f[: x.shape[0]] for f in cached]

    decoder.eval()
    generator = torch.Generator(device=device).manual_seed(0)

    def run() -> None:
        with amp:
            decoder.predict(encode, images, generator)

    reset_peak(device)
    times = timed(run, args.repeats, device)
    flips = 2 if args.flip else 1
    print(
        f"inference       : {args.steps} steps x {args.samples} samples x "
        f"{'flip' if args.flip else 'no flip'} ({args.steps * args.samples * flips} UNet passes "
        f"per image): median {args.batch / statistics.median(times):.2f} images/s, best "
        f"{args.batch / min(times):.2f} images/s; peak {peak_memory(device)}"
    )


if __name__ == "__main__":
    main()
