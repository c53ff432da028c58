"""The ``trainlab`` command: parses arguments, calls the library, prints.

A user mistake (:class:`~trainlab.errors.UserError`) prints one line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from trainlab.allocator import reuse_freed_memory
from trainlab.errors import UserError
from trainlab.interrupts import Interrupted, stop_on_signals
from trainlab.store import DEFAULT_STORE, FINISHED, RunStore
from trainlab.study.executors import EXECUTORS

EXAMPLES = """examples:
  trainlab train --set data.name=digits model.kind=mlp train.epochs=10
  trainlab train --config run.yaml --set model.activation=tanh train.lr=0.01
  trainlab train --set data.name=mnist --data-root ../shared/data
  trainlab train --set probes.every=10 --tensorboard tb    # then: tensorboard --logdir tb
  trainlab runs
  trainlab show 3f2a
  trainlab summary --model vgg_cifar --input-shape 3,32,32
  trainlab plan study.yaml --scale quick
  trainlab run study.yaml --scale quick --set train.epochs=3
  trainlab run 001-depth --scale medium --data-root cifar10-jpeg   # ends with its claims' verdicts
  trainlab run 001-depth --scale quick --data-root cifar10-jpeg --no-ensemble   # every seed on its own
  trainlab train --set train.device=cuda train.precision=bf16 train.channels_last=true
  trainlab run examples/custom-model/study.yaml             # your own network (docs/your-own-code.md)
  trainlab train --set model.kind=python model.target=nets.py:TinyNet model.args.width=32
  trainlab studies                                          # the built-in studies and their run times
  trainlab status study.yaml --json
"""


def _watch_seconds(text: str) -> float:
    """``--watch``'s optional SECONDS; a study name after it is the likely mistake, so the message says
    where the study goes."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}; put the study first: "
                                         "trainlab status STUDY --watch [SECONDS]") from None


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=DEFAULT_STORE, metavar="DIR",
                        help=f"run store directory (default: ./{DEFAULT_STORE})")


def _add_overrides(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help=text)
    parser.add_argument("--data-root", metavar="DIR", help="short for --set data.root=DIR")


def _add_training_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--download", action="store_true", help="let torchvision download mnist/fashion_mnist/cifar10")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard event files into DIR/RUN_ID")


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainlab", description="Controlled deep-learning experiments: train, probe, analyse, report.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train one configuration and store the run",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--config", metavar="FILE", help="run configuration (YAML with data/model/train sections)")
    _add_overrides(train, "dotted overrides, e.g. model.activation=tanh train.lr=0.01")
    train.add_argument("--rerun", action="store_true", help="train again even if this exact run is already done")
    _add_training_flags(train)
    _add_store(train)
    _add_json(train)

    for name, text in (("plan", "expand a study and show its runs without training"),
                       ("run", "train every run of a study that is not finished yet"),
                       ("status", "state and final metrics of each run of a study, and its claims' verdicts")):
        sub = commands.add_parser(name, help=text, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("study", metavar="STUDY", help="a study YAML file or the name of a built-in study")
        sub.add_argument("--scale", metavar="NAME", help="a scale the study defines, e.g. quick or full")
        _add_overrides(sub, "dotted overrides applied to the study's base configuration")
        _add_store(sub)
        if name == "status":
            sub.add_argument("--watch", type=_watch_seconds, nargs="?", const=2.0, metavar="SECONDS",
                             help="a live view of the study (any executor, any process) refreshed every "
                                  "SECONDS (default 2) until every run has ended")
        if name == "run":
            sub.add_argument("--executor", default="local", choices=EXECUTORS,
                             help="where runs train: in this process (default), in worker processes, or on Ray")
            sub.add_argument("--workers", type=int, metavar="N", help="worker processes (processes: default 2)")
            sub.add_argument("--address", metavar="HOST:PORT", help="Ray cluster address (default: start Ray locally)")
            sub.add_argument("--no-ensemble", action="store_true",
                             help="train every run on its own, never as a vectorised ensemble")
            _add_training_flags(sub)
            sub.add_argument("--no-report", action="store_true", help="do not write the study's report at the end")
        _add_json(sub)

    report = commands.add_parser(
        "report", help="write a study's report (HTML and Markdown); two studies: side by side",
        description="Build the report of a study from the run store: one self-contained HTML file and a "
                    "Markdown version with a figures folder. Give two studies to compare them.")
    report.add_argument("studies", nargs="+", metavar="STUDY", help="study YAML files or built-in study names")
    report.add_argument("--scale", metavar="NAME", help="the scale the runs were trained at, e.g. quick")
    _add_overrides(report, "the dotted overrides the runs were trained with")
    report.add_argument("--out", metavar="DIR", help="output folder: new, empty or an earlier report, which is replaced (default: STORE/reports/NAME)")
    _add_store(report)
    _add_json(report)

    studies = commands.add_parser("studies", help="the built-in studies: what each asks, its scales and run times")
    _add_json(studies)

    runs = commands.add_parser("runs", help="list the runs in the store")
    _add_store(runs)
    _add_json(runs)

    show = commands.add_parser("show", help="one run: configuration, status and per-epoch metrics")
    show.add_argument("run", metavar="RUN", help="run id or a unique prefix of it")
    _add_store(show)
    _add_json(show)

    _add_analyze(commands)

    summary = commands.add_parser("summary", help="layer table of a model: shapes and parameter counts")
    summary.add_argument("--model", required=True, metavar="SPEC",
                         help="a kind or preset name (mlp, cnn, resnet, vgg_cifar), a YAML file, or inline YAML "
                              "such as '{kind: mlp, hidden: [64, 64]}' or '{kind: torchvision, name: resnet18}'")
    summary.add_argument("--input-shape", default="3,32,32", metavar="C,H,W", help="input shape (default 3,32,32)")
    summary.add_argument("--num-classes", type=int, default=10, help="number of classes (default 10)")
    summary.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                         help="model fields, e.g. activation=tanh hidden=[64,64]")
    _add_json(summary)
    return parser


def _add_analyze(commands: argparse._SubParsersAction) -> None:
    """The ``analyze`` command; its option flags come from :class:`~trainlab.analysis.AnalysisOptions`."""
    from trainlab.analysis.catalog import ANALYSES, described_options, flag

    analyze = commands.add_parser(
        "analyze", help="what a trained run learned: filters, neurons, embeddings, guided backprop, ...",
        description="Analyse a stored run; each analysis writes a PNG and its data into the run's "
                    "analysis/ folder and records them in the store.")
    analyze.add_argument("run", metavar="RUN", help="run id or a unique prefix of it")
    analyze.add_argument("--what", metavar="A,B",
                         help=f"comma-separated analyses: {', '.join(ANALYSES)} (default: all that apply)")
    for name, kind, metavar, text in described_options():
        analyze.add_argument(flag(name), type=kind, metavar=metavar, help=text)
    analyze.add_argument("--data-root", metavar="DIR",
                         help="where the run's data set is now, if it has moved since the run trained")
    _add_store(analyze)
    _add_json(analyze)


def _version() -> str:
    from trainlab import __version__

    return __version__


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _table(frame: pd.DataFrame, floatfmt: str = "{:.4f}") -> str:
    return frame.to_string(index=False, float_format=floatfmt.format, na_rep="-")


HISTORY_FORMATS = {"lr": "{:.3g}", "samples_per_s": "{:,.0f}", "epoch_time": "{:.2f}", "wall_time": "{:.1f}",
                   "runs_together": "{:.0f}", "cpu_elsewhere": "{:.0%}"}


def _history_table(history: pd.DataFrame) -> str:
    """Per-epoch metrics: losses and accuracies to 4 decimals, lr, samples/s and seconds readable."""
    if history.empty:
        return "no epochs recorded"
    formatters = {c: HISTORY_FORMATS.get(c, "{:.4f}").format for c in history.columns if c != "epoch"}
    return history.to_string(index=False, formatters=formatters, na_rep="-")


# ---------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from trainlab.train import fit

    overrides = _overrides_with_data_root(args)
    logdir = _tensorboard_dir(args)
    try:
        result = fit(args.config, overrides, store=args.store, download=args.download, rerun=args.rerun,
                     progress=not (args.quiet or args.json) and sys.stderr.isatty())
    except OSError as error:  # the run's folder or disk failed it: recorded as failed, said in one line
        print(f"trainlab: run failed, recorded in {args.store}: {error}", file=sys.stderr)
        return 1
    if logdir:
        from trainlab.probes.tensorboard import write_tensorboard

        write_tensorboard(logdir / result.run_id, result.probes, result.probe_histograms, result.history,
                          result.curves, replace=True)
    if args.json:
        _print_json({"run_id": result.run_id, "status": result.status, "diverged_step": result.diverged_step,
                     "stopped_early": result.stopped_early, "final": result.final,
                     "history": result.history.to_dict(orient="records")})
        return 0
    print(_history_table(result.history))
    note = f" at step {result.diverged_step}" if result.status == "diverged" else ""
    early = " (stopped early)" if result.stopped_early else ""
    print(f"\nrun {result.run_id}: {result.status}{note}{early}; stored in {args.store}")
    if result.reused:
        print("this configuration had been trained before: the stored run is shown, not trained again "
              "(--rerun trains it anew)")
    return 0


def _existing_store(args: argparse.Namespace) -> RunStore:
    """The store at ``--store``, for a command that only reads one: a UserError if there is none (no
    empty store is made where a mistyped or default path points)."""
    if not (Path(args.store) / "trainlab.db").exists():
        raise UserError(f"no run store at {args.store} (it has no trainlab.db): run the study first, or give the "
                        "store it was run into with --store DIR")
    return RunStore(args.store)


def cmd_runs(args: argparse.Namespace) -> int:
    frame = _existing_store(args).runs()
    if args.json:
        _print_json(frame.to_dict(orient="records"))
        return 0
    if frame.empty:
        print(f"no runs in {args.store}")
        return 0
    frame["created"] = pd.to_datetime(frame["created"], unit="s").dt.strftime("%Y-%m-%d %H:%M")
    print(_table(frame, "{:.4g}"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from trainlab.train.fit import stored_history

    store = _existing_store(args)
    run = store.get_run(args.run)
    history = stored_history(store, run["run_id"])
    if args.json:
        _print_json({**run, "history": history.to_dict(orient="records"),
                     "artifacts": store.artifacts(run["run_id"]).to_dict(orient="records")})
        return 0
    import yaml

    print(f"run {run['run_id']}  status: {run['status']}  epochs: {run['epochs_done']}"
          + (f"  duration: {run['duration']:.1f}s" if run["duration"] else "")
          + (f"  diverged at step {run['diverged_step']}" if run["diverged_step"] is not None else ""))
    if run["error"]:
        print(f"error: {run['error']}")
    print("\n" + yaml.safe_dump(run["config"], sort_keys=False, default_flow_style=None).rstrip())
    print("\n" + _history_table(history))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from trainlab.analysis import AnalysisOptions, analyze
    from trainlab.analysis.catalog import requested_analyses

    options = AnalysisOptions.of(vars(args), flags=True)
    requested_analyses(args.what)  # a mistake in --what first, then a missing store
    written = analyze(args.run, args.what, store=_existing_store(args), options=options, data_root=args.data_root)
    if args.json:
        _print_json(written.to_dict(orient="records"))
    else:
        print(_table(written))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from trainlab.config import apply_overrides
    from trainlab.models import create_model, resolve_model_config, summary

    try:
        shape = tuple(int(v) for v in args.input_shape.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise UserError(f"--input-shape {args.input_shape!r}: expected three positive integers C,H,W, e.g. 3,32,32")
    model_cfg = resolve_model_config(_model_spec(args.model), **apply_overrides({}, args.overrides))
    table = summary(create_model(model_cfg, shape, args.num_classes), shape)
    if args.json:
        _print_json(table.to_dict())
    else:
        print(table)
    return 0


def _model_spec(text: str) -> dict[str, Any] | str:
    """A --model argument: a YAML file's model fields, inline YAML fields, or a kind or preset name."""
    from trainlab.config import parse_yaml, read_yaml

    if text.endswith((".yaml", ".yml")) or (len(text) < 256 and "\n" not in text and Path(text).is_file()):
        raw = read_yaml(text)
        return raw.get("model", raw)
    value = parse_yaml(text, f"--model {text!r}")
    return value if isinstance(value, dict) else str(value)


def cmd_plan(args: argparse.Namespace) -> int:
    from trainlab.study import plan_study
    from trainlab.study.claims import show_value
    from trainlab.study.verdicts import statement

    spec, runs = plan_study(args.study, args.scale, _overrides_with_data_root(args))
    groups, finished = _plan_groups(runs, Path(args.store))
    seeds = sorted({r.seed for r in runs})
    claims = [statement(claim) for claim in spec.claims]
    adaptive = spec.adaptive
    if args.json:
        _print_json({"name": spec.name, "question": spec.question, "runs": len(runs), "seeds": seeds,
                     "max_seeds": adaptive.max if adaptive else len(seeds), "claims": claims,
                     "groups": groups.to_dict(orient="records"), "run_ids": [r.run_id for r in runs]})
        return 0
    print(f"{spec.name}: {spec.question}".rstrip(": "))
    more = f"; seeds are added to undecided variants, up to {adaptive.max} each" if adaptive else ""
    print(f"{len(runs)} runs = {len(groups)} configurations x {len(seeds)} seeds {seeds}{more}")
    if finished is not None:
        print(f"{finished} of them finished in store {args.store}; `trainlab run` trains the other "
              f"{len(runs) - finished}")
    print()
    # values as a study file writes them (true, not True); (base) where a variant leaves a key at the base value
    shown = groups.assign(**{key: groups[key].map(lambda v: v if v is None or v != v else show_value(v))
                             for key in groups.columns if key not in ("label", "finished")})
    print(shown.to_string(index=False, na_rep="(base)"))
    if claims:
        print("\nclaims:\n" + "\n".join(f"  {i}. {text}" for i, text in enumerate(claims, start=1)))
    return 0


def _plan_groups(runs: list, store: Path) -> tuple[pd.DataFrame, int | None]:
    """A row per variant: its label and the keys it sets; with a store at ``store`` (plan never makes one),
    a ``finished`` column (``k/n`` of its runs) and the number of runs finished there, else None."""
    labels = [r.label or "base" for r in runs]
    groups = pd.DataFrame([{"label": label, **r.overrides} for label, r in zip(labels, runs)])
    groups = groups.drop_duplicates("label")
    if not (store / "trainlab.db").exists():
        return groups, None
    status = RunStore(store).status_of([r.run_id for r in runs])
    ended = pd.Series([status.get(r.run_id) in FINISHED for r in runs])
    counts = ended.groupby(labels).agg(["sum", "count"])
    groups["finished"] = [f"{counts.loc[label, 'sum']}/{counts.loc[label, 'count']}" for label in groups["label"]]
    return groups, int(ended.sum())


def cmd_run(args: argparse.Namespace) -> int:
    from trainlab.study import run_study

    logdir = _tensorboard_dir(args)
    result = run_study(args.study, args.scale, _overrides_with_data_root(args), store=args.store, executor=args.executor,
                       workers=args.workers, address=args.address, download=args.download,
                       ensemble=not args.no_ensemble, progress=not (args.quiet or args.json) and sys.stderr.isatty(),
                       tensorboard=logdir)
    files = None
    if not args.no_report and result.runs["status"].isin(FINISHED).any():  # else a report has nothing to show
        from trainlab.report import build_report

        files = build_report(result, store=args.store, scale=args.scale)  # the scale names it in the title
    report = files.html if files else None
    if args.json:
        _print_json({"runs": result.runs.to_dict(orient="records"), "report": report and str(report),
                     "claims": [v.as_dict() for v in result.verdicts]})
        return _exit_code(result.runs)
    code = _print_study(result.runs.assign(label=result.runs["label"].replace("", "base")), report)
    _print_verdicts(result)
    return code


def _overrides_with_data_root(args: argparse.Namespace) -> list[str]:
    """``--set`` values, plus ``data.root`` from ``--data-root``."""
    return list(args.overrides) + ([f"data.root={args.data_root}"] if args.data_root else [])


def _tensorboard_dir(args: argparse.Namespace) -> Path | None:
    """``--tensorboard DIR``, checked before training: it may not exist yet, but must not be a file."""
    if not args.tensorboard:
        return None
    path = Path(args.tensorboard)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"--tensorboard {args.tensorboard}: {existing} is a file, not a folder")
    return path


def cmd_studies(args: argparse.Namespace) -> int:
    from trainlab.study import builtin_studies

    rows = [{"name": s.name, "question": s.question, "source": s.source, "scales": ["full", *s.scales],
             "run_time": s.run_time} for s in builtin_studies()]
    if args.json:
        _print_json(rows)
        return 0
    for row in rows:
        times = ", ".join(f"{scale} {time}" for scale, time in row["run_time"].items()) or "not measured"
        print(f"{row['name']}  ({row['source']}; {times})\n    {row['question']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from trainlab.report import build_report
    from trainlab.study.report_sections import section_options
    from trainlab.study.spec import read_study

    for study in args.studies:  # a mistake in a study file first, then a missing store
        spec = read_study(study)
        section_options(spec.name, spec.report)
    studies = args.studies if len(args.studies) > 1 else args.studies[0]
    files = build_report(studies, store=_existing_store(args), out=args.out, scale=args.scale, overrides=_overrides_with_data_root(args))
    if args.json:
        _print_json({"html": str(files.html), "markdown": str(files.markdown), "figures": str(files.figures)})
    else:
        print(f"report: {files.html}\nmarkdown: {files.markdown}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from trainlab.study import load_study
    from trainlab.study.run import status_rows

    if args.watch is not None:
        return _watch(args)
    store = _existing_store(args)
    result = load_study(args.study, args.scale, _overrides_with_data_root(args), store=store)
    rows = status_rows(result)
    if args.json:
        _print_json({"runs": rows, "claims": [v.as_dict() for v in result.verdicts],
                     "rounds": [{"seeds": r.counts, "added": r.added, "why": r.why} for r in result.rounds]})
        return _exit_code(pd.DataFrame(rows))
    frame = pd.DataFrame([{"run_id": r["run_id"], "label": r["label"] or "base", "seed": r["seed"],
                           "status": r["status"], "epochs": r["epochs"],
                           **{k: r["final"].get(k, math.nan) for k in ("train_loss", "test_acc")}}
                          for r in rows])
    empty = store.conn.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is None
    print(f"store: {args.store}" + (" (it holds no runs at all: is it the store the study was run into?)"
                                    if empty else ""))
    code = _print_study(frame)
    _print_verdicts(result)
    return code


def _watch(args: argparse.Namespace) -> int:
    """``trainlab status --watch``: the study's progress per variant, redrawn in place on a terminal
    (appended elsewhere, or as JSON lines with ``--json``), until every run has ended."""
    import time

    from trainlab.study.watch import watch

    if not args.watch > 0:
        raise UserError(f"--watch takes a number of seconds above 0, got {args.watch:g}")
    store, overrides, terminal = RunStore(args.store), _overrides_with_data_root(args), sys.stdout.isatty()
    for frame in watch(args.study, store, args.watch, args.scale, overrides):
        if args.json:
            print(json.dumps(frame.to_dict(orient="records"), default=float), flush=True)
            continue
        table = pd.DataFrame({
            "variant": frame["variant"],
            "runs": [f"{d}/{n} done" + (f", {r} training" if r else "") for d, n, r in
                     zip(frame["done"], frame["runs"], frame["running"])],
            "epochs": [f"{e}/{p}" for e, p in zip(frame["epochs"], frame["planned_epochs"])],
            "now": frame["now"], "final": frame["final"], "left": frame["left"].map(_duration)})
        print(("\x1b[H\x1b[J" if terminal else "") + f"{time.strftime('%H:%M:%S')}  {args.study} "
              f"(metric now: each run's latest, mean over runs; final: mean over finished runs)")
        print(_table(table, "{:.4f}") + ("" if terminal else "\n"), flush=True)
    return 0


def _duration(seconds: float) -> str:
    """``1h 02m``, ``3m 20s``, ``45s``; ``-`` when unknown."""
    if not seconds == seconds:  # NaN: no epoch timed yet
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s" if rest >= 60 else f"{rest}s"


def _print_verdicts(result) -> None:
    """The claims' verdicts as a table, with the quote each tests, and how adaptive seeds were spent."""
    from trainlab.study import verdict_table
    from trainlab.study.verdicts import quotes

    if not result.verdicts:
        _print_rounds(result.rounds)
        return
    stats = result.spec.statistics
    level = result.verdicts[0].level
    looks = f", {result.spec.adaptive.looks} looks: each at {level:.3g}" if result.spec.adaptive else ""
    print(f"\nclaims (family-wise error {stats.alpha:g}, Holm-corrected over {len(result.verdicts)}{looks}; "
          f"{stats.confidence:.0%} bootstrap intervals):")
    print(_table(verdict_table(result.verdicts)))
    for numbers, quote in quotes(result.verdicts):
        print(f"  {', '.join(map(str, numbers))}: \"{quote}\"")
    _print_rounds(result.rounds)


def _print_rounds(rounds: list) -> None:
    """Which variants an adaptive study gave more seeds after each look, and why."""
    for number, seed_round in enumerate(rounds[:-1], start=1):
        print(f"  after round {number}: " + "; ".join(
            f"{label} +{len(seeds)} seeds ({', '.join(seed_round.why[label])})"
            for label, seeds in seed_round.added.items()))


def _exit_code(frame: pd.DataFrame) -> int:
    """0 when every run finished (done or diverged), else 1."""
    return 0 if set(frame["status"]) <= set(FINISHED) else 1


def _print_study(frame: pd.DataFrame, report: Path | None = None) -> int:
    columns = [c for c in ("run_id", "label", "seed", "status", "epochs", "train_loss", "val_acc", "test_acc")
               if c in frame.columns]
    print(_table(frame[columns], "{:.4f}"))
    counts = frame["status"].value_counts()
    print("\n" + ", ".join(f"{n} {status}" for status, n in counts.items()))
    if report:
        print(f"report: {report}")
    return _exit_code(frame)


COMMANDS = {"train": cmd_train, "runs": cmd_runs, "show": cmd_show, "analyze": cmd_analyze, "report": cmd_report, "studies": cmd_studies, "summary": cmd_summary,
            "plan": cmd_plan, "run": cmd_run, "status": cmd_status}


def _format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    """trainlab's own warnings (UserWarning) as one line, without the source line they come from."""
    if issubclass(category, UserWarning):
        return f"trainlab: warning: {message}\n"
    return _PYTHON_FORMAT_WARNING(message, category, filename, lineno, line)


_PYTHON_FORMAT_WARNING = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``trainlab`` console script."""
    args = build_parser().parse_args(argv)
    reuse_freed_memory()  # training's batch-sized tensors reuse the heap instead of faulting in fresh pages
    try:
        warnings.formatwarning = _format_warning
        with stop_on_signals():
            code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe surfaces here, where it is handled below, not at exit
        return code
    except UserError as error:
        print(f"trainlab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:  # runs that were training are marked interrupted, and resume
        stop = error if isinstance(error, Interrupted) else Interrupted("SIGINT")
        resumes = "; the same command again resumes where it stopped" if args.command in ("run", "train") else ""
        print(f"trainlab: interrupted by {stop}{resumes}", file=sys.stderr)
        return stop.exit_code
    except BrokenPipeError:  # the reader went away (trainlab plan X | head): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return 0
    finally:
        warnings.formatwarning = _PYTHON_FORMAT_WARNING


if __name__ == "__main__":
    sys.exit(main())
