"""Does bfloat16 cost accuracy? One study trained twice, fp32 and bf16, compared variant by variant.

    python bench/precision_accuracy.py 001-activations --scale medium --data-root DIR
    python bench/precision_accuracy.py 000-baseline --scale medium --data-root DIR --json out.json

Each precision trains into its own run store (``--store``, default a temp folder, so a rerun
reuses finished runs). Per variant it prints the final test accuracy of the fp32 and bf16 seeds
(mean, standard deviation, range), the difference of the means, Welch's t-test
(``scipy.stats.ttest_ind``) and whether the bf16 mean lies inside the range of the fp32 seeds;
then the wall time of each study and each claim's verdict under both precisions.
Issue M's rule: ``train.precision: auto`` may choose bf16 only where it costs no accuracy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
from scipy import stats

from trainlab.study import run_study

PRECISIONS = ("fp32", "bf16")


def train(study: str, scale: str, data_root: str, precision: str, store: Path) -> tuple[pd.DataFrame, float, dict]:
    """The study's finished runs under ``precision``, its wall time and its verdicts."""
    start = time.perf_counter()
    result = run_study(study, scale, [f"data.root={data_root}", f"train.precision={precision}"],
                       store=store / precision, progress=True)
    seconds = time.perf_counter() - start
    runs = result.runs[result.runs["status"] == "done"].copy()
    runs["label"] = runs["label"].fillna("base").replace("", "base")
    return runs, seconds, {v.statement: v.verdict for v in result.verdicts}


def compare(fp32: pd.DataFrame, bf16: pd.DataFrame) -> pd.DataFrame:
    """One row per variant: both precisions' final test accuracy and whether bf16 is within fp32's seeds."""
    rows = []
    for label, ours in bf16.groupby("label", sort=False):
        ref = fp32.loc[fp32["label"] == label, "test_acc"]
        acc = ours["test_acc"]
        rows.append({
            "variant": label, "fp32 n": len(ref), "fp32 mean": ref.mean(), "fp32 sd": ref.std(),
            "fp32 min": ref.min(), "fp32 max": ref.max(), "bf16 n": len(acc), "bf16 mean": acc.mean(),
            "bf16 sd": acc.std(), "difference": acc.mean() - ref.mean(),
            "welch p": stats.ttest_ind(acc, ref, equal_var=False).pvalue,
            "within fp32 range": bool(ref.min() <= acc.mean() <= ref.max()),
        })
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study")
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "trainlab-precision")
    parser.add_argument("--json", type=Path, help="write the table, times and verdicts here")
    args = parser.parse_args()
    store = args.store / f"{Path(args.study).stem}-{args.scale}"
    results = {p: train(args.study, args.scale, args.data_root, p, store) for p in PRECISIONS}
    table = compare(results["fp32"][0], results["bf16"][0])
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
        print(table.to_string(index=False))
    for p in PRECISIONS:
        runs, seconds, verdicts = results[p]
        print(f"{p}: {seconds:.0f} s for {len(runs)} runs; verdicts: "
              + "; ".join(f"{claim}: {verdict}" for claim, verdict in verdicts.items()))
    if args.json:
        args.json.write_text(json.dumps({
            "study": args.study, "scale": args.scale, "table": table.to_dict(orient="records"),
            "seconds": {p: results[p][1] for p in PRECISIONS}, "verdicts": {p: results[p][2] for p in PRECISIONS},
        }, indent=1, default=str))


if __name__ == "__main__":
    main()
