"""Cost of one probed step's measurements: ``Probe.step()`` + ``take()`` on the 001 MLP after one backward.

    python bench/probe_step.py            # best and median ms per call, 7 rounds of 30 calls

Statistics, histograms and update ratios of every parameter (batch 1024, 3 x 256 sigmoid MLP on
32 x 32 grey images): what a probed training step adds to the step itself.
"""

from __future__ import annotations

import time
from statistics import median

import torch
import torch.nn.functional as F

from trainlab.models import create_model
from trainlab.probes import Probe


def main() -> None:
    torch.manual_seed(0)
    model = create_model({"kind": "mlp", "hidden": [256, 256, 256], "activation": "sigmoid"}, (1, 32, 32), 10)
    x, y = torch.randn(1024, 1, 32, 32), torch.randint(0, 10, (1024,))
    with Probe(model) as probe:
        F.cross_entropy(model(x), y).backward()
        times = []
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(30):
                probe.step()
                probe.take()
            times.append((time.perf_counter() - start) / 30 * 1e3)
    print(f"probe step + take: best {min(times):.2f} ms, median {median(times):.2f} ms ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
