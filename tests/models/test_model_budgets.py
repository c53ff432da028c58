"""match_budget: depth, width and kernel solving against parameter counts of models built on the CPU."""

from __future__ import annotations

import pytest

from trainlab.config import ModelConfig
from trainlab.errors import UserError
from trainlab.models import create_model, match_budget

MNIST = (1, 28, 28)


def direct(spec, shape=MNIST, classes=10) -> int:
    return sum(p.numel() for p in create_model(spec, shape, classes).parameters())


def closest(counts: dict[int, int], budget: int) -> int:
    """Brute-force answer: nearest count, ties to the smaller count, then the smaller size."""
    return min(counts, key=lambda n: (abs(counts[n] - budget), counts[n], n))


def cnn(blocks, **fields) -> dict:
    return {"kind": "cnn", "blocks": blocks, **fields}


def test_report_002_the_64_unit_mlp_as_large_as_784_256_256_10_has_54_hidden_layers() -> None:
    reference = {"kind": "mlp", "hidden": [256, 256]}
    assert direct(reference) == 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10 == 269_322
    solved = match_budget({"kind": "mlp", "hidden": [64]}, reference, solve="depth", input_shape=MNIST)
    assert isinstance(solved, ModelConfig) and solved.hidden == [64] * 54
    counts = {n: direct({"kind": "mlp", "hidden": [64] * n}) for n in (53, 54, 55)}
    assert closest(counts, 269_322) == 54
    assert match_budget("mlp", 269_322, width=64).hidden == [64] * 54  # the same with a count and width=


def test_depth_ties_go_to_the_smaller_model_and_exact_counts_are_hit() -> None:
    c53, c54 = direct({"kind": "mlp", "hidden": [64] * 53}), direct({"kind": "mlp", "hidden": [64] * 54})
    assert c54 - c53 == 64 * 64 + 64
    assert len(match_budget({"kind": "mlp", "hidden": [64]}, (c53 + c54) // 2).hidden) == 53
    assert len(match_budget({"kind": "mlp", "hidden": [64]}, (c53 + c54) // 2 + 1).hidden) == 54
    assert len(match_budget({"kind": "mlp", "hidden": [64]}, c54).hidden) == 54


def test_other_fields_are_kept() -> None:
    spec = {"kind": "mlp", "hidden": [32], "activation": "maxout", "batch_norm": True, "dropout": 0.3}
    solved = match_budget(spec, 100_000)
    assert (solved.activation, solved.batch_norm, solved.dropout) == ("maxout", True, 0.3)
    counts = {n: direct({**spec, "hidden": [32] * n}) for n in range(1, 40)}
    assert solved.hidden == [32] * closest(counts, 100_000)


@pytest.mark.parametrize("budget", [50_000, 123_456, 1_000_000])
def test_mlp_width_scales_every_layer_in_proportion(budget: int) -> None:
    solved = match_budget({"kind": "mlp", "hidden": [32, 16]}, budget, solve="width")
    widest = solved.hidden[0]
    assert solved.hidden == [widest, (widest + 1) // 2]  # half the widest, rounded half up
    counts = {w: direct({"kind": "mlp", "hidden": [w, (w + 1) // 2]}) for w in range(widest - 1, widest + 2)}
    assert closest(counts, budget) == widest


def test_mlp_width_of_equal_layers_recovers_a_model_as_budget() -> None:
    budget = {"kind": "mlp", "hidden": [77] * 3}
    solved = match_budget({"kind": "mlp", "hidden": [50, 50, 50]}, budget, "width")
    assert solved.hidden == [77, 77, 77]


def test_cnn_kernel_matches_brute_force_over_all_kernel_sizes() -> None:
    shape = (1, 12, 12)
    blocks = [{"channels": 4}, {"channels": 6, "pool": "max"}, {"channels": 8, "padding": 0}]
    counts = {}
    for k in range(1, 13):
        try:
            counts[k] = direct(cnn([{**b, "kernel": k} for b in blocks], fc=[16]), shape)
        except UserError:  # padding 0 on the 6x6 map of the last block: kernels above 6 do not fit
            pass
    assert sorted(counts) == [1, 2, 3, 4, 5, 6]
    assert list(counts.values()) != sorted(counts.values())  # the count is not monotone in the kernel
    for budget in [*counts.values(), *(c + 37 for c in counts.values() if c < max(counts.values()))]:
        solved = match_budget(cnn(blocks, fc=[16]), budget, "kernel", input_shape=shape)
        kernel = closest(counts, budget)
        assert [b.kernel for b in solved.blocks] == [kernel] * 3
        assert [b.padding for b in solved.blocks] == [None, None, 0] and solved.fc == [16]


@pytest.mark.parametrize(
    ("block", "depths"),
    [
        ({"channels": 4, "pool": "max"}, range(1, 5)),  # 28 -> 14 -> 7 -> 3 -> 1: only 4 depths fit
        ({"channels": 4, "stride": 2}, range(1, 31)),  # shrinks to 1x1, then each repeat adds weights
        ({"channels": 3, "kernel": 2}, range(1, 31)),  # even kernel: the map grows by a pixel per repeat
    ],
)
def test_cnn_depth_matches_brute_force(block: dict, depths: range) -> None:
    head = [{"channels": 2}]
    counts = {n: direct(cnn(head + [block] * n)) for n in depths}
    sample = [counts[n] for n in (*depths[::7], min(counts, key=counts.get))]
    for budget in (*sample, *(c + 11 for c in sample), *(c - 11 for c in sample)):
        if min(counts.values()) <= budget <= max(counts.values()):
            solved = match_budget(cnn(head + [block]), budget, max_depth=depths[-1])
            assert len(solved.blocks) == 1 + closest(counts, budget)
            assert solved.blocks[0].channels == 2 and all(b == solved.blocks[1] for b in solved.blocks[1:])
    if block.get("kernel") != 2:  # shrinking repeats make the count fall first: the smallest is deeper
        assert min(counts, key=counts.get) > 1
    with pytest.raises(UserError, match="below the smallest candidate"):
        match_budget(cnn(head + [block]), min(counts.values()) - 1, max_depth=depths[-1])


def test_cnn_width_matches_brute_force() -> None:
    shape = (3, 8, 8)
    blocks = [{"channels": 8}, {"channels": 16, "pool": "max"}]
    counts = {}
    for w in range(1, 65):
        scaled = [{**blocks[0], "channels": (w + 1) // 2}, {**blocks[1], "channels": w}]
        counts[w] = direct(cnn(scaled, fc=[32]), shape)
    assert list(counts.values()) == sorted(set(counts.values()))  # strictly growing
    for budget in (1_000, 12_345, 40_000, counts[64]):
        solved = match_budget(cnn(blocks, fc=[32]), budget, "width", input_shape=shape, max_width=64)
        width = closest(counts, budget)
        assert [b.channels for b in solved.blocks] == [(width + 1) // 2, width]
        assert solved.blocks[1].pool == "max" and solved.fc == [32]


@pytest.mark.parametrize(
    ("spec", "budget", "options", "message"),
    [
        ("mlp", 10**5, {"solve": "dept"}, r"unknown solve 'dept' \(did you mean 'depth'\?\); valid choices"),
        ("mlp", 1_000, {}, r"below the smallest candidate model \(203,530 parameters at depth 1\)"),
        ("mlp", 10**9, {"max_depth": 8}, "above the largest.*raise the search option max_depth"),
        ("resnet", 10**5, {}, "cannot solve the depth of a model of kind 'resnet'"),
        ("mlp", 10**5, {"solve": "kernel"}, "cannot solve the kernel of a model of kind 'mlp'"),
        (cnn([{"channels": 4}]), 10**5, {"width": 8}, "unknown search option 'width'.*max_depth"),
        ("mlp", 10**5, {"max_depth": 0}, "max_depth must be a positive int"),
        ({"kind": "mlp", "hidden": []}, 10**5, {}, "no hidden layers.*width=64"),
        ({"kind": "mlp", "hidden": []}, 10**5, {"solve": "width"}, "no hidden layers"),
        ("mlp", True, {}, "not a bool"),
    ],
)
def test_errors(spec, budget, options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        match_budget(spec, budget, **options)
