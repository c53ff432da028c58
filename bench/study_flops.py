"""FLOPs of every built-in study at quick and full scale, and the full run time they imply.

    python bench/study_flops.py --times quick_times.json [--cifar10 DIR] [--shared DIR]

``quick_times.json`` maps study names to measured quick-scale seconds (from ``pytest -m studies
tests/studies --durations=0``). A study's full-scale estimate is its full FLOPs at the FLOP rate
its own quick scale achieved, so it carries the quick scale's overheads (data loading, report)
and is an upper-end estimate, not a measurement.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainlab.data import load_data
from trainlab.study import builtin_studies, plan_study
from trainlab.train.ensemble import training_flops

REPO = Path(__file__).resolve().parents[1]


def data_overrides(name: str, scale: str | None, cifar10: str, shared: Path) -> list[str]:
    """Where each study's data set is: the CIFAR-10 JPEG tree, MNIST for FashionMNIST, Gurmukhi."""
    _, runs = plan_study(name, scale)
    data = runs[0].config.data.name
    if data == "cifar10":
        return [f"data.root={cifar10}"]
    if data in ("mnist", "fashion_mnist"):
        return ["data.name=mnist", f"data.root={shared}"]
    if data == "gurmukhi":
        return [f"data.root={shared / 'gurmukhi'}"]
    return []


def study_flops(name: str, scale: str | None, overrides: list[str]) -> float:
    """Training plus evaluation FLOPs of every run of the study at ``scale``."""
    _, runs = plan_study(name, scale, overrides)
    total = 0.0
    for run in runs:
        cfg = run.config
        data = load_data(cfg.data)
        per_sample = training_flops(cfg, data.input_shape, data.num_classes) / cfg.train.batch_size
        evaluated = (len(data.val) if data.val is not None else 0) + (len(data.test) if data.test is not None else 0)
        total += cfg.train.epochs * (len(data.train) + evaluated / 3) * per_sample
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--times", required=True, help="JSON: study name -> measured quick-scale seconds")
    parser.add_argument("--cifar10", required=True, help="CIFAR-10 JPEG tree")
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"), help="the shared data folder")
    args = parser.parse_args()
    times = json.loads(Path(args.times).read_text())
    shared = Path(args.shared)
    print(f"{'study':<22} {'quick TFLOP':>11} {'quick s':>8} {'GFLOP/s':>8} {'full TFLOP':>11} {'full est.':>10}")
    for spec in builtin_studies():
        if spec.name not in times:
            continue
        quick = study_flops(spec.name, "quick", data_overrides(spec.name, "quick", args.cifar10, shared))
        full = study_flops(spec.name, None, data_overrides(spec.name, None, args.cifar10, shared))
        rate = quick / times[spec.name]
        hours = full / rate / 3600
        print(f"{spec.name:<22} {quick / 1e12:>11.3f} {times[spec.name]:>8.0f} {rate / 1e9:>8.1f} "
              f"{full / 1e12:>11.1f} {hours:>9.1f}h")


if __name__ == "__main__":
    main()
