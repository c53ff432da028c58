"""Where a vectorised ensemble pays on this machine: step time of 8 models, one after another vs vmapped.

    python bench/ensemble_crossover.py [--device cuda] [--profile "CNN 8-16, CIFAR, batch 16"]

For networks from a few to a few thousand MFLOP per training step, prints the training FLOPs per
model and step, the time of one step of 8 models with a plain loop (8 forward/backward passes and
8 Adam steps) and with :mod:`trainlab.train.ensemble`'s vmapped step and stacked Adam, and the
speed-up. ``trainlab.train.ensemble.CPU_MAX_FLOPS`` is set from this table. With ``--profile
NAME``, also prints the operators that take the time in that network's two steps (torch.profiler).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from trainlab.config import TrainConfig, load_config
from trainlab.models import create_model
from trainlab.train.ensemble import training_flops
from trainlab.train.stacked_optim import StackedOptimizer

CASES = {  # name: (model, input shape, batch size)
    "MLP 64, digits, batch 64": ({"kind": "mlp", "hidden": [64]}, (1, 8, 8), 64),
    "MLP 6x64, digits, batch 64": ({"kind": "mlp", "hidden": [64] * 6}, (1, 8, 8), 64),
    "CNN 8, MNIST, batch 16": ({"kind": "cnn", "blocks": [{"channels": 8, "pool": "max"}]}, (1, 28, 28), 16),
    "CNN 8-16, CIFAR, batch 16": ({"kind": "cnn", "blocks": [{"channels": 8, "pool": "max"},
                                                            {"channels": 16, "pool": "max"}], "fc": [32]}, (3, 32, 32), 16),
    "CNN 16-32, CIFAR, batch 16": ({"kind": "cnn", "blocks": [{"channels": 16, "pool": "max"},
                                                             {"channels": 32, "pool": "max"}], "fc": [64]}, (3, 32, 32), 16),
    "CNN 32-64, CIFAR, batch 16": ({"kind": "cnn", "blocks": [{"channels": 32, "pool": "max"},
                                                             {"channels": 64, "pool": "max"}], "fc": [128]}, (3, 32, 32), 16),
    "001 MLP, batch 1024": ({"kind": "mlp", "hidden": [256, 256, 256], "activation": "sigmoid"}, (1, 32, 32), 1024),
}


def milliseconds(step, seconds: float = 2.0) -> float:
    """Mean wall time of ``step()`` over about ``seconds``, after a warm-up call."""
    step()
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step()
        count += 1
    return (time.perf_counter() - start) / count * 1000


def steps(model_cfg: dict, shape: tuple[int, ...], batch: int, n: int, device: torch.device):
    """``(one_by_one, together)``: one training step of ``n`` models, in a plain loop and vmapped."""
    cfg = load_config({"model": model_cfg, "train": {"batch_size": batch}})
    models = [create_model(cfg.model, shape, 10).to(device) for _ in range(n)]
    optimizers = [torch.optim.Adam(m.parameters()) for m in models]
    x, y = torch.randn(n, batch, *shape, device=device), torch.randint(0, 10, (n, batch), device=device)

    def one_by_one():
        for model, optimizer, xm, ym in zip(models, optimizers, x, y):
            optimizer.zero_grad()
            F.cross_entropy(model(xm), ym).backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    params, buffers = stack_module_state(models)
    params = {k: v.detach() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    vmapped = vmap(grad_and_value(lambda p, b, xm, ym: F.cross_entropy(functional_call(base, (p, b), (xm,)), ym)))
    stacked = StackedOptimizer(params, [TrainConfig()] * n)

    def together():
        grads, _ = vmapped(params, buffers, x, y)
        stacked.step(grads)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return one_by_one, together


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--profile", metavar="NAME", choices=list(CASES), help="profile this network's steps")
    args = parser.parse_args()
    device, n = torch.device(args.device), args.models
    print(f"{'network':<28} {'MFLOP/step':>10} {'one by one':>11} {'ensemble':>9} {'speed-up':>8}")
    for name, (model_cfg, shape, batch) in CASES.items():
        one_by_one, together = steps(model_cfg, shape, batch, n, device)
        flops = training_flops(load_config({"model": model_cfg, "train": {"batch_size": batch}}), shape, 10)
        sequential, vectorised = milliseconds(one_by_one), milliseconds(together)
        print(f"{name:<28} {flops / 1e6:>10.1f} {sequential:>9.1f}ms {vectorised:>7.1f}ms {sequential / vectorised:>8.2f}")
    if args.profile:
        for label, step in zip(("one by one", "ensemble"), steps(*CASES[args.profile], n, device)):
            step()
            with torch.profiler.profile() as profiler:
                for _ in range(10):
                    step()
            print(f"\n{args.profile}, {label}: 10 steps of {n} models")
            print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
