"""Write the image sets of docs/fingerprint.md (`dpeval.fingerprint.demo_data.make_demo`).

python scripts/fingerprint_demo_data.py --out fp-demo --size 64
"""

from __future__ import annotations

import argparse
import logging

from dpeval.fingerprint.demo_data import make_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", type=int, default=64, help="tile side in pixels")
    parser.add_argument(
        "--generators", default="tiny-sd21,tiny-sdxl,tiny-flux", help="comma-separated manifests"
    )
    parser.add_argument(
        "--derived", default="tiny-sd21", help="generators to derive a perturbed copy of"
    )
    parser.add_argument("--test-fraction", type=float, default=0.4, help="held-out share")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the copy")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    folders = make_demo(
        args.out,
        generators=[g for g in args.generators.split(",") if g],
        derived=[g for g in args.derived.split(",") if g],
        size=args.size,
        test_fraction=args.test_fraction,
        seed=args.seed,
    )
    for name, folder in folders.items():
        print(f"{name}\t{folder}")


if __name__ == "__main__":
    main()
