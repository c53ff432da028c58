"""Where a study's training time goes: one variant's seeds trained as the study trains them, under
torch.profiler.

    python bench/profile_run.py 001-activations --variant "logits, activation=relu" --seeds 3 --epochs 3

The variant's first ``--seeds`` runs train as ``trainlab run`` would train them: as one vectorised
ensemble where :func:`~trainlab.train.ensemble.ensemble_pays`, else one after another; with the
study's probes; for ``--epochs`` epochs at the study's ``--scale`` (full by default). Freed memory
is not kept for reuse as ``trainlab run`` keeps it (:mod:`trainlab.allocator`): under the profiler
that setting made the 001 MLP's epochs 2.6 times slower (1.6 s against 0.62 s), which it does not
do without the profiler. Printed: the epoch times; the FLOP rate of training and
evaluation together; the rate of the matrix products alone at the network's own shapes (their FLOPs
over their CPU time, both as the profiler counts them) against a 2048 x 2048 product; and the
operators with the largest share of the CPU time. CIFAR-10 is the JPEG tree ``--cifar10 DIR`` or
the shared tarball, as in run.py.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from run import cifar10_tree, matmul_gflops
from trainlab.data import load_data
from trainlab.study import plan_study
from trainlab.train import train_run
from trainlab.train.ensemble import ensemble_pays, train_ensemble, training_flops

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study")
    parser.add_argument("--variant", required=True, help="the variant's label, as `trainlab plan` prints it")
    parser.add_argument("--scale", default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cifar10", default=None)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()

    _, runs = plan_study(args.study, args.scale, [f"data.root={cifar10_tree(args.cifar10)}"])
    mine = [r.config for r in runs if r.label == args.variant]
    if not mine:
        sys.exit(f"error: no variant {args.variant!r}; valid choices: {', '.join(dict.fromkeys(r.label for r in runs))}")
    configs = [c.model_copy(update={"train": c.train.model_copy(update={"epochs": args.epochs})})
               for c in mine[: args.seeds]]
    data = load_data(configs[0].data)
    together = len(configs) > 1 and ensemble_pays(configs[0], data)  # as the study decides
    steps = -(-len(data.train) // configs[0].train.batch_size)
    evaluated = sum(len(s) for s in (data.val, data.test) if s is not None)
    per_sample = training_flops(configs[0], data.input_shape, data.num_classes) / configs[0].train.batch_size
    flops = len(configs) * args.epochs * per_sample * (len(data.train) + evaluated / 3)  # a forward is a third

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        results = (train_ensemble(configs, data) if together else [train_run(c, data) for c in configs])
    seconds = time.perf_counter() - start
    times = results[0].history["epoch_time"].round(3).tolist()
    print(f"{args.study} / {args.variant}: {len(configs)} run(s) x {args.epochs} epochs of {steps} steps, "
          f"{'one ensemble' if together else 'one after another'}; epoch times of the first {times} s")

    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    products = [e for e in events if e.key in MATMULS]
    product_time = sum(e.self_cpu_time_total for e in products) / 1e6
    product_rate = sum(e.flops for e in products) / product_time / 1e9
    peak = matmul_gflops(torch.device("cpu"))
    print(f"training and evaluation: {flops / seconds / 1e9:.1f} GFLOP/s over {seconds:.1f} s "
          f"({flops / 1e12:.2f} TFLOP), profiler included")
    print(f"matrix products: {product_time / (total / 1e6):.0%} of the CPU time, at {product_rate:.1f} GFLOP/s; "
          f"a 2048 x 2048 product: {peak:.1f} GFLOP/s")
    print(f"\n{'operator':<40} {'share':>6} {'calls':>7}")
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        print(f"{event.key[:40]:<40} {event.self_cpu_time_total / total:>6.1%} {event.count:>7}")


if __name__ == "__main__":
    main()
