"""Summarise the quick-scale study runs written by the studies test (for docs/reproductions.md).

    TRAINLAB_STUDY_RESULTS=DIR python -m pytest tests/studies -m "studies or not studies"
    python bench/study_results.py DIR [--json times.json]

Prints, per study, its measured seconds and each variant's mean test accuracy over its seeds;
``--json`` writes ``{study: seconds}`` for ``bench/study_flops.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", type=Path, help="write {study: seconds} here")
    args = parser.parse_args()
    times = {}
    for path in sorted(args.folder.glob("*.json")):
        result = json.loads(path.read_text())
        times[path.stem] = round(result["seconds"], 1)
        runs = pd.DataFrame(result["runs"])
        runs["label"] = runs["label"].fillna("base").replace("", "base")
        means = runs.groupby("label", sort=False)["test_acc"].mean()
        statuses = ", ".join(f"{k} {v}" for k, v in runs["status"].value_counts().items())
        print(f"{path.stem}: {result['seconds']:.0f} s; {statuses}")
        print("    " + "; ".join(f"{label} {acc:.3f}" for label, acc in means.items()))
    if args.json:
        args.json.write_text(json.dumps(times, indent=1))


if __name__ == "__main__":
    main()
