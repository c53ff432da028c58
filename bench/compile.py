"""Whether ``torch.compile`` pays for trainlab's small models: one training step, eager vs compiled.

    python bench/compile.py [--device cuda]

For three networks (the small CNN of the ensemble row at batch 16, the 001 MLP at batch 1024 and
a digits MLP at batch 64), prints the time to compile (the first two steps, with an empty
compile cache, as a study's first run of an architecture meets it) and the mean step time
(forward, backward, fused Adam) eager and compiled. Why trainlab trains eagerly:
docs/performance.md.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import time

CACHE = tempfile.mkdtemp(prefix="trainlab-compile-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = CACHE  # before importing torch: every run compiles with a cold cache
atexit.register(shutil.rmtree, CACHE, ignore_errors=True)

import torch
import torch.nn.functional as F
from ensemble_crossover import milliseconds

from trainlab.config import load_config
from trainlab.models import create_model

CASES = {  # name: (model, input shape, batch size)
    "CNN 8-16, CIFAR, batch 16": ({"kind": "cnn", "blocks": [{"channels": 8, "pool": "max"},
                                                            {"channels": 16, "pool": "max"}], "fc": [32]}, (3, 32, 32), 16),
    "001 MLP, batch 1024": ({"kind": "mlp", "hidden": [256, 256, 256], "activation": "sigmoid"}, (1, 32, 32), 1024),
    "MLP 64, digits, batch 64": ({"kind": "mlp", "hidden": [64]}, (1, 8, 8), 64),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    device = torch.device(parser.parse_args().device)
    print(f"{'network':<28} {'compile':>8} {'eager':>9} {'compiled':>9} {'speed-up':>8}")
    for name, (model_cfg, shape, batch) in CASES.items():
        times = []
        for compiled in (False, True):
            torch.manual_seed(0)
            model = create_model(load_config({"model": model_cfg}).model, shape, 10).to(device)
            optimizer = torch.optim.Adam(model.parameters(), fused=True)
            forward = torch.compile(model) if compiled else model
            x, y = torch.randn(batch, *shape, device=device), torch.randint(0, 10, (batch,), device=device)

            def step():
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(forward(x), y).backward()  # noqa: B023 (called inside this iteration)
                optimizer.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()

            start = time.perf_counter()
            step()
            step()
            warm_up = time.perf_counter() - start
            times.append(milliseconds(step, seconds=3.0))
        eager, fast = times
        print(f"{name:<28} {warm_up:>7.1f}s {eager:>7.2f}ms {fast:>7.2f}ms {eager / fast:>8.2f}")


if __name__ == "__main__":
    main()
