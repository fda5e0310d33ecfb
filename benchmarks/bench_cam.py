"""The two headline configurations of the benchmark matrix (kept for old links).

ResNet-18 96 px batch 64 (every extractor, 1/2/10 targets) and ResNet-50
224 px batch 16, each against the ``no_grad`` forward, the autograd lower
bound and every installed peer, timed and measured exactly as
``bench_matrix.py`` does (see benchmarks/README.md).

Run: ``python benchmarks/bench_cam.py`` (``--device cuda`` on a GPU,
``--quick`` for a smoke run that writes nothing). Writes
results/bench_cam.{json,md,png} (``bench_cam_cuda.*`` on a GPU).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as H
import bench_matrix
from _common import RESULTS


def configs(device: str, quick: bool) -> list[H.Config]:
    if quick:
        return [H.Config("resnet18", 32, 4, device=device, ks=(1, 10), peers=("pytorch-grad-cam",))]
    peers = tuple(H.PEERS)
    return [
        H.Config(
            "resnet18",
            96,
            64,
            device=device,
            ks=(1, 2, 10),
            extractors=None,
            peers=peers,
            groups=("k", "extractors"),
        ),
        H.Config("resnet50", 224, 16, device=device, peers=peers, groups=("peers",)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, results not written")
    args = parser.parse_args()
    payload = bench_matrix.run(
        configs(args.device, args.quick),
        suite="bench_cam",
        devices=[args.device],
        repeats=2 if args.quick else args.repeats,
        warmup=1,
        max_call_s=10.0 if args.device == "cpu" else 5.0,
        command=shlex.join(["python", "benchmarks/bench_cam.py", *sys.argv[1:]]),
    )
    if not args.quick:
        suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
        bench_matrix.write_outputs(payload, RESULTS / f"bench_cam{suffix}.json")


if __name__ == "__main__":
    main()
