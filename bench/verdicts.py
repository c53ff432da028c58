"""Run built-in studies at a scale and keep their claims' verdicts, for docs/reproductions.md.

    python bench/verdicts.py run 001-activations 001-depth --scale medium   # or `all`
    python bench/verdicts.py docs --scale medium                             # rewrites the docs' verdict tables

``run`` trains each study with ``trainlab run NAME --scale SCALE --json`` in a process of its own
(on the real data in ``../shared/data``: CIFAR-10 from the JPEG tarball, MNIST standing in for
FashionMNIST, Gurmukhi) into one store, and writes ``bench/verdicts/SCALE/NAME.json``: the
command, its wall time, the machine, the seeds each variant got and every verdict. Studies whose
result file exists are skipped (delete it to run again, or ``--rejudge`` to judge their stored runs
again after a claim changed, keeping the measured time). ``docs`` writes those results into
docs/reproductions.md between its ``<!-- verdicts:SCALE -->`` markers, the measured times into
the studies' ``run_time``, and (medium scale) the time and verdict counts into the README's table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "verdicts"
DOCS = REPO / "docs" / "reproductions.md"


def data_overrides(name: str, scale: str) -> tuple[list[str], list[str]]:
    """Where a built-in study's data set lives in ../shared (MNIST's files for FashionMNIST): the
    overrides, and the same as a reader would type them (paths relative to the repository)."""
    sys.path.insert(0, str(REPO))
    from bench.run import cifar10_tree
    from bench.study_flops import data_overrides as overrides_of

    cifar10 = cifar10_tree(None)
    overrides = overrides_of(name, scale, str(cifar10), SHARED)
    typed = [o.replace(str(cifar10), "cifar10-jpeg").replace(str(SHARED), "../shared/data") for o in overrides]
    return overrides, (["--set", *typed] if typed else [])


def run(names: list[str], scale: str, store: Path, rejudge: bool = False) -> None:
    out = RESULTS / scale
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = out / f"{name}.json"
        before = json.loads(target.read_text()) if target.exists() else None
        if before and not rejudge:
            print(f"{name}: kept {target.relative_to(REPO)}")
            continue
        overrides, typed = data_overrides(name, scale)
        argv = ["run", name, "--scale", scale, "--json", "--no-report", "--quiet"]
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "trainlab", *argv, "--store", str(store),
                               *(["--set", *overrides] if overrides else [])], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if before:  # judged again on the stored runs: the training time is the first run's
            seconds = before["seconds"]
        if done.returncode not in (0, 1):
            sys.exit(f"{name}: exit {done.returncode}\n{done.stderr}")
        result = json.loads(done.stdout)
        runs = result["runs"]
        seeds: dict[str, int] = {}
        for row in runs:
            if row["status"] == "done":
                seeds[row["label"] or "base"] = seeds.get(row["label"] or "base", 0) + 1
        command = " ".join(["trainlab", *argv[:-3], *typed])
        record = {"study": name, "scale": scale, "command": command, "seconds": round(seconds),
                  "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}", "runs": len(runs),
                  "statuses": sorted({row["status"] for row in runs}), "seeds": seeds, "claims": result["claims"]}
        target.write_text(json.dumps(record, indent=1) + "\n")
        verdicts = ", ".join(c["verdict"] for c in result["claims"])
        print(f"{name}: {seconds / 60:.1f} min, {len(runs)} runs; {verdicts or 'no claims at this scale'}")


def table(record: dict) -> str:
    """A study's verdicts as Markdown."""
    lines = [f"**{record['study']}** ({record['seconds'] / 60:.0f} min, {record['runs']} runs; seeds per "
             f"variant {_seed_range(record['seeds'])}): `{record['command']}`", "",
             "| # | verdict | claim | effect [95% interval] | p (Holm) |", "|---:|:---|:---|---:|---:|"]
    for claim in record["claims"]:
        signed = "" if claim.get("form") in ("at_least", "at_most") else "+"  # a mean against a number: unsigned
        effect = "-" if claim["effect"] is None else f"{claim['effect']:{signed}.3g} [{claim['low']:.3g}, {claim['high']:.3g}]"
        p = "-" if claim["p_adjusted"] is None else (f"{claim['p_adjusted']:.2g}" if claim["p_adjusted"] >= 0.001
                                                     else "<0.001")
        lines.append(f"| {claim['claim']} | {claim['verdict']} | {claim['statement']} | {effect} | {p} |")
    if not record["claims"]:
        lines.append("| - | - | no claim is judged at this scale | - | - |")
    return "\n".join(lines)


def _seed_range(seeds: dict[str, int]) -> str:
    counts = sorted(set(seeds.values()))
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def docs(scale: str) -> None:
    records = [json.loads(p.read_text()) for p in sorted((RESULTS / scale).glob("*.json"))]
    start, end = f"<!-- verdicts:{scale} -->", f"<!-- /verdicts:{scale} -->"
    text = DOCS.read_text()
    if start not in text:
        sys.exit(f"{DOCS} has no {start} ... {end} section")
    body = "\n\n".join(table(r) for r in records) or "(no study run at this scale yet)"
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    DOCS.write_text(f"{before}{start}\n{body}\n{end}{after}")
    print(f"{DOCS.relative_to(REPO)}: {len(records)} studies at scale {scale}")
    for record in records:
        _run_time(record)
    if scale == "medium":
        _readme_column({r["study"]: r for r in records})


def _minutes(record: dict) -> int:
    return max(1, round(record["seconds"] / 60))


def _run_time(record: dict) -> None:
    """The study file's ``run_time`` entry for the record's scale: the measured minutes."""
    from trainlab.study.spec import STUDIES_DIR

    path = STUDIES_DIR / f"{record['study']}.yaml"
    text = path.read_text()
    line = (f'  {record["scale"]}: "{_minutes(record)} min on 2 CPU cores (measured, sharing the cores with other '
            'jobs part of the time: bench/verdicts.py)"')
    text = re.sub(rf'^  {record["scale"]}: ".*"\n', "", text, flags=re.M)
    text = re.sub(r'^(run_time:\n(?:  [a-z]+: ".*"\n)*?  quick: ".*"\n)', lambda m: m.group(1) + line + "\n", text,
                  count=1, flags=re.M)
    path.write_text(text)


def _quick_columns(spec) -> tuple[int, str]:
    """A study's runs at its quick scale (its only scale for the quickstart) and that scale's measured
    time from its ``run_time``, e.g. ``(16, "32 s")``."""
    from trainlab.study.spec import expand

    scale = "quick" if "quick" in spec.scales else None
    time = spec.run_time.get(scale or "full", "")
    return len(expand(spec, scale)), " ".join(time.split()[:2])


def _readme_column(records: dict[str, dict]) -> None:
    """The README's built-in studies table: each study's runs and time at the quick scale (from the
    study), and its medium time and verdict counts, or "not run yet"."""
    from trainlab.study import builtin_studies

    specs = {spec.name: spec for spec in builtin_studies()}
    readme = REPO / "README.md"
    rows = []
    for line in readme.read_text().split("\n"):
        match = re.match(r"^\| `([\w-]+)` \|(.*)\| (\d+) \| ([^|]+) \| ([^|]*) \| ([^|]*) \|$", line)
        if match and match.group(1) == "quickstart":
            runs, quick = _quick_columns(specs["quickstart"])
            line = f"| `quickstart` |{match.group(2)}| {runs} | {quick} | {match.group(5)} | {match.group(6)} |"
        elif match:
            runs, quick = _quick_columns(specs[match.group(1)])
            record = records.get(match.group(1))
            counts: dict[str, int] = {}
            for claim in record["claims"] if record else []:
                counts[claim["verdict"]] = counts.get(claim["verdict"], 0) + 1
            verdicts = ", ".join(f"{n} {v}" for v, n in counts.items()) or "claims judged at full scale only"
            medium = f"{_minutes(record)} min: {verdicts}" if record else "not run yet"
            line = f"| `{match.group(1)}` |{match.group(2)}| {runs} | {quick} | {medium} | {match.group(6)} |"
        rows.append(line)
    readme.write_text("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["run", "docs"])
    parser.add_argument("names", nargs="*", help="built-in study names, or `all` (those that have the scale)")
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--rejudge", action="store_true",
                        help="judge studies with a result file again on their stored runs (after a claim changed)")
    parser.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "trainlab-verdicts",
                        help="run store to train into")
    args = parser.parse_args()
    if args.action == "docs":
        docs(args.scale)
        return
    from trainlab.study import builtin_studies

    names = (sorted(spec.name for spec in builtin_studies() if args.scale in spec.scales) if args.names == ["all"]
             else args.names)
    run(names, args.scale, args.store, args.rejudge)


if __name__ == "__main__":
    main()
