"""Cost of one probed step's measurements on the 001 MLP (batch 1024, 3 x 256 sigmoid, 32 x 32 grey images).

    python bench/probe_step.py            # best and median ms per call, 7 rounds of 30 calls

First ``Probe.step()`` + ``take()`` after one backward: statistics, histograms and update ratios
of every parameter. Then whole training steps (forward, backward, probe, take) with the probe due
at every step, with and without the activation derivatives and the gradients with respect to the
layer outputs (measured in the forward and backward passes), against the same step unprobed: in
one thread, timed by the process's CPU time (best and median of 15 rounds of 10 steps), which
other load on the machine changes less than the wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from statistics import median

import torch
import torch.nn.functional as F

from trainlab.models import create_model
from trainlab.probes import Probe


def _time(call: Callable[[], None], rounds: int = 7, calls: int = 30,
          clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Milliseconds per call of each round, by ``clock``."""
    call()  # warm-up
    times = []
    for _ in range(rounds):
        start = clock()
        for _ in range(calls):
            call()
        times.append((clock() - start) / calls * 1e3)
    return times


def main() -> None:
    torch.manual_seed(0)
    model = create_model({"kind": "mlp", "hidden": [256, 256, 256], "activation": "sigmoid"}, (1, 32, 32), 10)
    x, y = torch.randn(1024, 1, 32, 32), torch.randint(0, 10, (1024,))
    threads = torch.get_num_threads()
    with Probe(model) as probe:
        F.cross_entropy(model(x), y).backward()

        def measure() -> None:
            probe.step()
            probe.take()

        times = _time(measure)
    print(f"probe step + take: best {min(times):.2f} ms, median {median(times):.2f} ms ({threads} threads)")
    torch.set_num_threads(1)
    for name, options in [("unprobed", {"schedule": lambda step: False}), ("probed", {}),
                          ("probed + derivatives", {"derivatives": True}),
                          ("probed + derivatives + output_grads", {"derivatives": True, "output_grads": True})]:
        with Probe(model, **options) as probe:
            def train_step() -> None:
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                probe.step()
                probe.take()

            times = _time(train_step, rounds=15, calls=10, clock=time.process_time)
        print(f"training step, {name}: best {min(times):.1f} ms, median {median(times):.1f} ms (CPU time, 1 thread)")


if __name__ == "__main__":
    main()
