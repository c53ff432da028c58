"""trainlab's benchmarks: each row measured against what a user would otherwise write, on this machine.

    python bench/run.py                    # every row at the default size (under 10 minutes on 2 cores)
    python bench/run.py --size full        # the reports' full sizes (the whole 001 studies: tens of minutes)
    python bench/run.py --only floor,ensemble --json results.json

Rows (issue G): ``report`` the 001 MLP written as report 001 did (torchvision data set, per-sample
PIL transforms, DataLoader) vs trainlab; ``floor`` a minimal tensor-resident PyTorch loop vs
trainlab with default probes, with achieved and matmul GFLOP/s; ``probes`` trainlab with its default
probes on vs off, at 18 and 40 steps per epoch; ``precision`` bf16 autocast and channels_last vs fp32 for
the 001 MLP and the 000, 003 and 004 CNNs at their studies' batch sizes; ``shared`` the quickstart and a
12-run study while another job keeps every core busy, default vs threads 1 and processes; ``ensemble`` 8 seeds of the 000
CNN at batch 16 one after another vs one vectorised ensemble; ``study`` the 001 activation and
depth studies end to end vs their FLOP count at matmul speed, with peak RSS; ``data`` first and
cached load of the 60,000 CIFAR-10 JPEGs; ``threads`` one process with all cores vs one process
per core, for a small and a large model. With CUDA the ``floor``, ``probes``, ``precision`` and ``ensemble`` rows also run on
the GPU. CIFAR-10 is the JPEG tree ``--cifar10 DIR`` (or the ``cifar10-jpeg.tar.gz`` next to the
repository, extracted once into the temp folder).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from statistics import median

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from trainlab.allocator import reuse_freed_memory
from trainlab.config import RunConfig, load_config
from trainlab.data import load_data, to_float
from trainlab.models import create_model
from trainlab.study import plan_study, run_study
from trainlab.train import train_run
from trainlab.train.ensemble import train_ensemble, training_flops

REPO = Path(__file__).resolve().parents[1]
WORK = Path(tempfile.gettempdir()) / "trainlab-bench"
SIZES = {  # per size: paired rounds and trainlab epochs per round in report/floor, images for the
    # ensemble row, epochs and images of the 001 studies
    "tiny": {"rounds": 1, "epochs": 1, "ensemble_images": 320, "study_epochs": 1, "study_limit": 4000},
    "default": {"rounds": 5, "epochs": 2, "ensemble_images": 2000, "study_epochs": 1, "study_limit": None},
    "full": {"rounds": 5, "epochs": 3, "ensemble_images": 8000, "study_epochs": None, "study_limit": None},
}
STUDIES_001 = ("001-activations", "001-depth")
MLP_001 = {  # the 001 activation study's network and training, as a run configuration
    "data": {"name": "cifar10", "grayscale": True, "normalize": False, "val_size": 10000},
    "model": {"kind": "mlp", "hidden": [256, 256, 256], "activation": "sigmoid"},
    "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 1024, "device": "cpu"},
}


# ----------------------------------------------------------------------------- helpers
def cifar10_tree(given: str | None) -> Path:
    """The CIFAR-10 JPEG tree: ``given``, or the shared tarball extracted once into WORK."""
    if given:
        return Path(given)
    tarball = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
    root = WORK / "cifar10-jpeg"
    if not root.is_dir():
        if not tarball.is_file():
            sys.exit(f"error: no CIFAR-10: pass --cifar10 DIR (a tree with train/ and test/) or put {tarball}")
        WORK.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=WORK))
        with tarfile.open(tarball) as archive:
            archive.extractall(staging, filter="data")
        (staging / "cifar10-jpeg").rename(root)
        staging.rmdir()
    return root


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 10, rounds: int = 3) -> float:
    """fp32 GFLOP/s of an ``n x n`` matmul, best of ``rounds``: the machine's practical peak for dense layers."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(rounds):
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9)
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one training step (forward and backward) on the batch ``x``, counted by PyTorch."""
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def peak_rss_kb() -> int:
    """This process's peak resident memory in kB: VmHWM, which (unlike ru_maxrss) starts afresh at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: the closest there is


def row(name: str, measured: str, ours: float, reference: float, unit: str, target: str, ok: bool | None,
        note: str = "", ratio: float | None = None) -> dict:
    """One table row; ``ratio`` defaults to ``ours / reference``."""
    if ratio is None:
        ratio = ours / reference if reference else float("nan")
    return {"row": name, "measured": measured, "trainlab": ours, "reference": reference, "ratio": ratio,
            "unit": unit, "target": target, "ok": ok, "note": note}


def paired_rounds(rounds: int, *measures: Callable[[], float]) -> list[list[float]]:
    """Each of ``measures`` once per round, back to back, the order turned around every other round.

    The machine's speed drifts over seconds to minutes; measurements taken side by side see the
    same machine, so their ratio (:func:`paired_ratio`) is steadier than a ratio of two bests.
    """
    results: list[list[float]] = [[] for _ in measures]
    for i in range(rounds):
        order = list(enumerate(measures))
        for k, measure in order if i % 2 == 0 else order[::-1]:
            results[k].append(measure())
    return results


def paired_ratio(ours: list[float], reference: list[float]) -> float:
    """The median over rounds of ``ours / reference``."""
    return median(a / b for a, b in zip(ours, reference))


# ----------------------------------------------------------------------------- rows
def bench_report_style(tree: Path, size: dict) -> list[dict]:
    """Row 1: report 001's loop (torchvision CIFAR10, PIL transforms per sample, DataLoader) vs trainlab."""
    import torchvision
    from torch.utils.data import DataLoader, random_split
    from torchvision import transforms

    class PickledCIFAR10(torchvision.datasets.CIFAR10):
        """torchvision's CIFAR10 reader on batches written from the JPEG tree (their checksums differ)."""

        def _check_integrity(self) -> bool:
            return True

        def _load_meta(self) -> None:
            with open(Path(self.root) / self.base_folder / "batches.meta", "rb") as file:
                self.classes = pickle.load(file)["label_names"]
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    root = WORK / "cifar10-pickled"
    batches = root / "cifar-10-batches-py"
    if not (batches / "batches.meta").is_file():
        full = load_data(load_config({"data": {"name": "cifar10", "root": str(tree), "val_size": 0}}).data)
        batches.mkdir(parents=True, exist_ok=True)
        x, y = full.train.x.reshape(len(full.train), -1).numpy(), full.train.y.tolist()
        for i in range(5):
            part = slice(i * 10000, (i + 1) * 10000)
            with open(batches / f"data_batch_{i + 1}", "wb") as file:
                pickle.dump({"data": x[part], "labels": y[part]}, file)
        with open(batches / "test_batch", "wb") as file:
            pickle.dump({"data": full.test.x.reshape(len(full.test), -1).numpy(), "labels": full.test.y.tolist()}, file)
        with open(batches / "batches.meta", "wb") as file:
            pickle.dump({"label_names": full.classes}, file)

    dataset = PickledCIFAR10(root, train=True, transform=transforms.Compose([transforms.Grayscale(), transforms.ToTensor()]))
    train_set, _ = random_split(dataset, [40000, 10000], generator=torch.Generator().manual_seed(0))
    loader = DataLoader(train_set, batch_size=1024, shuffle=True, num_workers=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(1024, 256), nn.Sigmoid(), nn.Linear(256, 256), nn.Sigmoid(),
                          nn.Linear(256, 256), nn.Sigmoid(), nn.Linear(256, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def report_epoch() -> float:
        start, seen, running = time.perf_counter(), 0, 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            running += loss.item()  # as the report's loop: the running loss, every step
            seen += len(x)
        return seen / (time.perf_counter() - start)

    reference, ours = paired_rounds(size["rounds"], report_epoch, lambda: trainlab_mlp(tree, size, probes=True))
    ratio = paired_ratio(ours, reference)
    return [row("report", "001 MLP samples/s vs report-style loop", median(ours), median(reference), "samples/s",
                ">= 8x", ratio >= 8, ratio=ratio)]


def trainlab_mlp(tree: Path, size: dict, probes: bool, device: str = "cpu", steps: int | None = None) -> float:
    """trainlab's training samples/s on the 001 MLP (best epoch), default probes on or off.

    ``steps``: training steps per epoch (of 1024 images), by ``data.limit``; default all 40,000 images, 40 steps.
    """
    limit = [f"data.limit={MLP_001['data']['val_size'] + steps * 1024}"] if steps else []
    cfg = load_config(MLP_001, [f"data.root={tree}", f"train.epochs={size['epochs']}", f"probes.enabled={probes}",
                                f"train.device={device}", *limit])
    return float(train_run(cfg).history["samples_per_s"].max())


def bench_floor(tree: Path, size: dict, device: torch.device) -> list[dict]:
    """Row 2: a minimal tensor-resident loop (no probes, no bookkeeping) vs trainlab with default probes;
    also trainlab with its default probes vs without them."""
    cfg = load_config(MLP_001, [f"data.root={tree}"])
    data = load_data(cfg.data).to(device)
    x_all, y_all = data.train.x, data.train.y
    mean, std = data.mean.to(device), data.std.to(device)
    torch.manual_seed(0)
    model = create_model(cfg.model, data.input_shape, data.num_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def floor_epoch() -> float:
        sync(device)
        start = time.perf_counter()
        order = torch.randperm(len(x_all), device=device)
        for i in range(0, len(x_all), 1024):
            idx = order[i : i + 1024]
            loss = F.cross_entropy(model(to_float(x_all[idx], mean, std)), y_all[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
        return len(x_all) / (time.perf_counter() - start)

    floor_epoch()  # warm-up
    floor, ours = paired_rounds(
        size["rounds"],
        lambda: max(floor_epoch() for _ in range(size["epochs"])),  # best of as many epochs as trainlab's
        lambda: trainlab_mlp(tree, size, probes=True, device=device.type))
    flops = train_flops(model, to_float(x_all[:1024], mean, std), y_all[:1024]) / 1024
    peak = matmul_gflops(device)
    where = "GPU" if device.type == "cuda" else "CPU"
    vs_floor = paired_ratio(ours, floor)
    return [
        row(f"floor ({where})", "001 MLP samples/s, probes on, vs hand-written loop", median(ours), median(floor),
            "samples/s", ">= 0.9x", vs_floor >= 0.9, ratio=vs_floor),
        row(f"gflops ({where})", "achieved GFLOP/s vs fp32 2048x2048 matmul", flops * median(ours) / 1e9, peak,
            "GFLOP/s", "(context)", None, f"{flops / 1e6:.2f} MFLOP per training sample"),
    ]


def bench_probes(tree: Path, size: dict, device: torch.device) -> list[dict]:
    """Default probes on vs off, on the 001 MLP with epochs of 18 and of 40 steps (batch 1024)."""
    rows = []
    where = "GPU" if device.type == "cuda" else "CPU"
    for steps in (18, 40):
        on, off = paired_rounds(size["rounds"], *(partial(trainlab_mlp, tree, size, probes, device.type, steps)
                                                  for probes in (True, False)))
        ratio = paired_ratio(on, off)
        rows.append(row(f"probes {steps} ({where})", f"001 MLP samples/s, {steps} steps per epoch, default probes "
                        "on vs off", median(on), median(off), "samples/s", ">= 0.9x", ratio >= 0.9, ratio=ratio))
    return rows


SMALL_CNN = ["model.blocks=[{channels: 8, pool: max}, {channels: 16, pool: max}]", "model.fc=[32]"]


def bench_ensemble(tree: Path, size: dict, device: torch.device, seeds: int = 8) -> list[dict]:
    """Row 3: 8 seeds at batch 16 with the 000 settings, one after another vs one vectorised ensemble.

    Two networks: a small CNN (8 and 16 channels) and the 000 baseline CNN itself.
    """
    rows = []
    for label, network in (("small CNN", SMALL_CNN), ("000 CNN", [])):
        _, runs = plan_study("000-baseline", overrides=[
            f"data.root={tree}", f"data.limit={size['ensemble_images']}", "data.test_limit=500", "data.val_size=100",
            "train.epochs=1", f"train.device={device.type}", *network])
        configs = [load_config(runs[0].config, [f"train.seed={seed}"]) for seed in range(seeds)]
        data = load_data(configs[0].data)
        start = time.perf_counter()
        for cfg in configs:
            train_run(cfg, data)
        sequential = time.perf_counter() - start
        start = time.perf_counter()
        train_ensemble(configs, data)
        together = time.perf_counter() - start
        where = "GPU" if device.type == "cuda" else "CPU"
        images = len(data.train) * seeds
        flops = training_flops(configs[0], data.input_shape, data.num_classes)
        rows.append(row(f"ensemble ({where})", f"{seeds} seeds of the {label}, batch 16: samples/s, vs one by one",
                        images / together, images / sequential, "samples/s", ">= 3x", sequential / together >= 3,
                        f"{flops / 1e6:.0f} MFLOP per model and step"))
    return rows


def bench_study(tree: Path, size: dict) -> list[dict]:
    """Row 4 and the RSS half of row 5: the 001 activation and depth studies end to end, in a child process."""
    store = Path(tempfile.mkdtemp(dir=WORK))
    child = subprocess.Popen([sys.executable, __file__, "--study-child", str(store), "--cifar10", str(tree),
                              "--size", size["name"]], stdout=subprocess.PIPE)
    out, _ = child.communicate()
    if child.returncode != 0:
        sys.exit(f"error: the study benchmark failed (status {child.returncode})")
    result = json.loads(out)
    peak = matmul_gflops(torch.device("cpu"))
    ideal = result["flops"] / (peak * 1e9)
    rss_gb = result["peak_rss"] / 2**20  # kB -> GiB
    return [
        row("study", f"001 activations + depth ({result['runs']} runs x {result['epochs']} epochs): seconds vs "
            "FLOPs at matmul speed", result["seconds"], ideal, "s", "<= 1.5x", result["seconds"] <= 1.5 * ideal,
            f"{result['flops'] / 1e12:.2f} TFLOP"),
        row("memory", "peak RSS of that study", rss_gb, 2.0, "GiB", "< 2 GiB", rss_gb < 2.0),
    ]


def study_child(store: str, tree: Path, size: dict) -> None:
    """Run both 001 studies into ``store`` as ``trainlab run`` would (freed memory reused); print seconds,
    runs, counted FLOPs and peak RSS (kB) as JSON."""
    reuse_freed_memory()
    overrides = [f"data.root={tree}"]
    if size["study_epochs"]:
        overrides.append(f"train.epochs={size['study_epochs']}")
    if size["study_limit"]:
        overrides += [f"data.limit={size['study_limit']}", f"data.val_size={size['study_limit'] // 5}"]
    start = time.perf_counter()
    trained = [run_study(study, overrides=overrides, store=store).planned for study in STUDIES_001]
    seconds = time.perf_counter() - start
    peak_rss = peak_rss_kb()  # before counting FLOPs below
    total_flops, epochs = 0, 0
    for planned in trained:  # every run trained, seeds that claims added included
        data = load_data(planned[0].config.data)
        for run in planned:
            cfg = run.config
            model = create_model(cfg.model, data.input_shape, data.num_classes)
            x = to_float(data.train.x[:cfg.train.batch_size], data.mean, data.std)
            per_sample = train_flops(model, x, data.train.y[: len(x)]) / len(x)
            evaluated = len(data.val) + len(data.test)
            total_flops += cfg.train.epochs * (len(data.train) * per_sample + evaluated * per_sample / 3)
            epochs = cfg.train.epochs
    runs = sum(len(planned) for planned in trained)
    print(json.dumps({"seconds": seconds, "flops": total_flops, "runs": runs, "epochs": epochs, "peak_rss": peak_rss}))


def bench_data(tree: Path) -> list[dict]:
    """Row 5: first load (decoding every JPEG) and cached load of CIFAR-10, in fresh processes."""
    cache = tempfile.mkdtemp(dir=WORK)
    code = ("import time, sys; from trainlab.config import load_config; from trainlab.data import load_data; "
            "t = time.perf_counter(); d = load_data(load_config({'data': {'name': 'cifar10', 'root': sys.argv[1]}}).data); "
            "print(time.perf_counter() - t, len(d.train) + len(d.val) + len(d.test))")
    env = {**os.environ, "TRAINLAB_CACHE": cache}
    first, second = (subprocess.run([sys.executable, "-c", code, str(tree)], env=env, capture_output=True, text=True,
                                    check=True).stdout.split() for _ in range(2))
    images = int(first[1])
    return [
        row("data", f"CIFAR-10 JPEGs ({images} images): first load, s", float(first[0]), float("nan"), "s",
            "(context)", None),
        row("data cached", "CIFAR-10 cached load, s", float(second[0]), 1.0, "s", "< 1 s", float(second[0]) < 1.0),
    ]


SHARED_STUDIES = {  # a 12-run study: 2 optimisers x 2 learning rates x 3 seeds of a small CNN on the digits
    "quickstart": "quickstart",
    "12-run CNN": {"name": "shared", "base": {"data": {"name": "digits"}, "train": {"epochs": 8, "batch_size": 32},
                                              "model": {"kind": "cnn", "blocks": [{"channels": 16}, {"channels": 32}],
                                                        "fc": [64]}},
                   "vary": {"train.optimizer": ["sgd", "adam"], "train.lr": [0.01, 0.001]}, "seeds": 3},
}
# another job on the machine: a PyTorch loop on as many threads as there are cores
COMPETING_LOAD = ("import torch\na = torch.randn(512, 512)\nwhile True:\n    a = torch.tanh(a @ a * 0.01)\n")


def bench_shared(tree: Path) -> list[dict]:
    """A study while another job keeps every core busy: the default (local executor, threads chosen by
    trainlab) against the best of ``train.threads=1`` and ``--executor processes``, for the quickstart and
    a 12-run study."""
    cores = os.cpu_count() or 1
    load = subprocess.Popen([sys.executable, "-c", COMPETING_LOAD], env={**os.environ, "OMP_NUM_THREADS": str(cores)})
    time.sleep(2)  # the load is running before anything is timed
    rows = []
    try:
        for label, study in SHARED_STUDIES.items():
            def timed(executor: str = "local", overrides: tuple[str, ...] = ()) -> float:
                start = time.perf_counter()
                run_study(study, overrides=list(overrides), store=tempfile.mkdtemp(dir=WORK), executor=executor,
                          workers=cores if executor == "processes" else None)
                return time.perf_counter() - start

            timed(overrides=("train.epochs=1", "probes.embeddings_at=[]"))  # warm-up: the first study in a process pays for imports
            default, one_thread, processes = timed(), timed(overrides=("train.threads=1",)), timed("processes")
            best = min(one_thread, processes)
            rows.append(row(f"shared: {label}", f"seconds with another {cores}-thread job running: default vs the "
                            f"best of threads 1 ({one_thread:.1f} s) and processes ({processes:.1f} s)",
                            default, best, "s", "<= 1.5x", default <= 1.5 * best))
    finally:
        load.kill()
        load.wait()
    return rows


PRECISION_MODELS = {  # a study whose first run's network and batch size are timed: a label for the row
    "001-activations": "001 MLP", "000-baseline": "000 CNN", "003-cnn-variants": "003 CNN", "004-bn-dropout": "004 CNN",
}
LAYOUTS = {"bf16": ("bf16", False), "channels_last": ("fp32", True), "bf16 + channels_last": ("bf16", True)}


def precision_step(cfg: RunConfig, precision: str, channels_last: bool, device: torch.device) -> Callable[[], float]:
    """A measure of training samples/s (forward, backward, Adam) of ``cfg``'s network at its batch size, on
    random images, under ``precision`` and the memory layout; about a second per call."""
    from trainlab.train.loop import autocast

    shape = (1 if cfg.data.grayscale else 3, 32, 32)
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model(cfg.model, shape, 10).to(device, memory_format=layout)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(cfg.train.batch_size, *shape, device=device).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (cfg.train.batch_size,), device=device)

    def steps(n: int) -> float:
        sync(device)
        start = time.perf_counter()
        for _ in range(n):
            with autocast(device, precision):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
        return time.perf_counter() - start

    n = max(3, round(3 / steps(3)))  # calibrated to about a second
    return lambda: n * len(x) / steps(n)


def bench_precision(tree: Path, size: dict, device: torch.device) -> list[dict]:
    """bf16 autocast and channels_last against fp32, for the 001 MLP and the 000, 003 and 004 CNNs at their
    studies' batch sizes: training samples/s, median of paired rounds."""
    from trainlab.train.loop import native_bf16

    where = "GPU" if device.type == "cuda" else "CPU"
    native = "native bf16" if native_bf16(device.type) else "bf16 emulated: no native bf16 on this device"
    rows = []
    for study, label in PRECISION_MODELS.items():
        cfg = plan_study(study)[1][0].config  # the study's first run
        variants = {"fp32": ("fp32", False), **LAYOUTS}
        measures = [precision_step(cfg, precision, last, device) for precision, last in variants.values()]
        results = paired_rounds(size["rounds"], *measures)
        batch = cfg.train.batch_size
        for name, result in list(zip(variants, results))[1:]:
            ratio = paired_ratio(result, results[0])
            rows.append(row(f"{label} {name} ({where})", f"training samples/s at batch {batch}, {name} vs fp32",
                            median(result), median(results[0]), "samples/s", "(choice)", None, native, ratio=ratio))
    return rows


def bench_threads(tree: Path) -> list[dict]:
    """Threads vs processes: 2 x cores runs in this process with all cores, vs one 1-thread worker per core.

    No ensembles, so that only the split of the cores differs; the processes' start (import,
    data load) is included, as a user waits for it too.
    """
    rows = []
    cores = os.cpu_count() or 1
    for label, study_overrides in (("small CNN", ["model.kind=cnn", "model.fc=[]", "train.batch_size=16",
                                                 "model.blocks=[{channels: 16, pool: max}]", "data.limit=4000"]),
                                   ("001 MLP", ["data.limit=20000"])):
        results = {}
        for executor, workers in (("local", None), ("processes", cores)):
            store = tempfile.mkdtemp(dir=WORK)
            study = {"name": "threads", "base": MLP_001, "seeds": 2 * cores}
            start = time.perf_counter()
            run_study(study, overrides=[f"data.root={tree}", "train.epochs=2", "data.test_limit=500",
                                        "data.val_size=500", *study_overrides],
                      store=store, executor=executor, workers=workers, ensemble=False)
            results[executor] = time.perf_counter() - start
        rows.append(row(f"threads: {label}", f"{2 * cores} runs: {cores} worker processes x 1 thread (trainlab) vs "
                        f"1 process x {torch.get_num_threads()} threads (reference), s", results["processes"],
                        results["local"], "s", "(choice)", None))
    return rows


ROWS = {"report": bench_report_style, "floor": bench_floor, "probes": bench_probes, "precision": bench_precision,
        "ensemble": bench_ensemble, "study": bench_study, "data": bench_data, "threads": bench_threads,
        "shared": bench_shared}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="default")
    parser.add_argument("--only", help=f"comma-separated rows of {', '.join(ROWS)}")
    parser.add_argument("--cifar10", metavar="DIR", help="CIFAR-10 JPEG tree (train/ and test/)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--study-child", metavar="STORE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = SIZES[args.size] | {"name": args.size}
    tree = cifar10_tree(args.cifar10)
    if args.study_child:
        study_child(args.study_child, tree, size)
        return
    chosen = args.only.split(",") if args.only else list(ROWS)
    unknown = [name for name in chosen if name not in ROWS]
    if unknown:
        sys.exit(f"error: unknown rows {unknown}; valid: {', '.join(ROWS)}")
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TRAINLAB_CACHE", str(WORK / "cache"))
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for name in chosen:
        started = time.perf_counter()
        if name in ("floor", "probes", "precision", "ensemble"):
            for device in devices:
                rows += ROWS[name](tree, size, device)
        elif name in ("data", "threads", "shared"):
            rows += ROWS[name](tree)
        else:
            rows += ROWS[name](tree, size)
        print(f"[{name}: {time.perf_counter() - started:.0f} s]", file=sys.stderr)
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no CUDA device"))
    print(f"{'row':<20} {'trainlab':>12} {'reference':>12} {'ratio':>8}  {'target':<9} {'ok':<4} what")
    for r in rows:
        ok = "" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        print(f"{r['row']:<20} {r['trainlab']:>12.4g} {r['reference']:>12.4g} {r['ratio']:>8.2f}  {r['target']:<9} "
              f"{ok:<4} {r['measured']} [{r['unit']}]" + (f"; {r['note']}" if r["note"] else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "torch": torch.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
