"""Networks of a given size: solve a model's depth, width or kernel size for a parameter budget.

Report 002 compares networks of (nearly) equal size: the 64-unit MLP as large as a 784-256-256-10
one (54 hidden layers), the CNN kernel size that matches an MLP. :func:`match_budget` answers such
questions exactly: it counts the parameters of built candidates (on the meta device, so nothing is
allocated), bisecting where the count provably grows with the solved size and trying every candidate
where it does not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import TYPE_CHECKING, Any

import torch

from trainlab.errors import UserError, did_you_mean, unknown
from trainlab.models.cnn import block_output_size
from trainlab.models.registry import create_model, resolve_model_config

if TYPE_CHECKING:
    from trainlab.config import ModelConfig

SOLVES = ("depth", "width", "kernel")
# The search options of each solvable (kind, solve) and their defaults; None: see _options.
SEARCH: dict[tuple[str, str], dict[str, int | None]] = {
    ("mlp", "depth"): {"width": None, "max_depth": 1024},
    ("mlp", "width"): {"max_width": 4096},
    ("cnn", "depth"): {"max_depth": 1024},
    ("cnn", "width"): {"max_width": 4096},
    ("cnn", "kernel"): {"max_kernel": None},
}


@dataclass
class _Family:
    """Model configs ``make(n)`` for a solved size ``n``.

    The count is tried at every ``n`` of ``exhaustive`` and strictly grows with ``n`` over ``monotone``.
    ``what`` names ``n`` and ``bound`` the search option that ends the candidates (for error messages).
    """

    make: Callable[[int], ModelConfig]
    exhaustive: range
    monotone: range
    what: str
    bound: str


def count_parameters(
    spec: ModelConfig | dict[str, Any] | str, input_shape: Sequence[int], num_classes: int
) -> int:
    """Number of parameters (trainable or not, buffers excluded) of the network of ``spec``."""
    with torch.device("meta"):  # the initialisation scheme cannot change the count
        model = create_model(spec, input_shape, num_classes, init="default")
    return sum(p.numel() for p in model.parameters())


def match_budget(
    spec: ModelConfig | dict[str, Any] | str,
    budget: int | ModelConfig | dict[str, Any] | str,
    solve: str = "depth",
    input_shape: Sequence[int] = (1, 28, 28),
    num_classes: int = 10,
    **search: int,
) -> ModelConfig:
    """The variant of ``spec`` whose parameter count is closest to ``budget``; ties go to the smaller model.

    ``budget`` is a parameter count, or a model (ModelConfig, dict of fields or name) whose own count
    for ``input_shape`` and ``num_classes`` is the budget. ``spec`` must itself be a valid network for
    that input. What ``solve`` changes, and the ``search`` options it takes:

    - mlp, ``depth``: ``N`` hidden layers of width ``width`` (default ``spec.hidden[0]``),
      ``1 <= N <= max_depth`` (1024).
    - mlp, ``width``: the same number of hidden layers, the widest of width ``W`` and the others
      scaled in proportion (rounded, at least 1), ``1 <= W <= max_width`` (4096); a network of equal
      widths gets ``W`` everywhere.
    - cnn, ``depth``: the last conv block repeated ``N`` times, ``1 <= N <= max_depth`` (1024).
    - cnn, ``width``: the conv blocks' channels scaled as mlp widths, the widest block getting ``W``
      channels, ``1 <= W <= max_width`` (4096); the dense layers ``fc`` are kept.
    - cnn, ``kernel``: one kernel size ``K`` for every conv block, ``1 <= K <= max_kernel`` (default the
      larger input side); blocks without an explicit padding pad ``K // 2``. Sizes for which the
      network has no pixels left are skipped.

    Returns the validated ModelConfig, all other fields as in ``spec``. Raises UserError for an
    unknown ``solve`` or search option, a kind that cannot be solved that way, and a budget below
    the smallest or above the largest candidate.
    """
    if solve not in SOLVES:
        raise unknown("solve", solve, SOLVES)
    cfg = resolve_model_config(spec)
    if (cfg.kind, solve) not in SEARCH:
        raise UserError(
            f"cannot solve the {solve} of a model of kind {cfg.kind!r}; solvable: the depth or width "
            "of an mlp, the depth, width or kernel of a cnn"
        )
    count_parameters(cfg, input_shape, num_classes)  # checks the spec, input_shape and num_classes
    options = _options(cfg, solve, input_shape, search)
    target = _target(budget, input_shape, num_classes)
    family = _FAMILIES[cfg.kind, solve](cfg, input_shape, options)
    best = _closest(family, target, lambda n: count_parameters(family.make(n), input_shape, num_classes))
    return family.make(best)


def _options(
    cfg: ModelConfig, solve: str, input_shape: Sequence[int], search: dict[str, Any]
) -> dict[str, int]:
    """The search options of ``cfg.kind`` and ``solve``: the given ones (positive ints) over the defaults."""
    defaults = SEARCH[cfg.kind, solve]
    for name, value in search.items():
        if name not in defaults:
            raise UserError(
                f"unknown search option {name!r}{did_you_mean(name, defaults)} for the {solve} of a "
                f"{cfg.kind}; valid options: {', '.join(defaults)}"
            )
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise UserError(f"search option {name} must be a positive int, got {value!r}")
    options = {**defaults, **{name: int(value) for name, value in search.items()}}
    if options.get("width", 0) is None:
        if not cfg.hidden:
            raise UserError("the mlp has no hidden layers: give the width to repeat, e.g. width=64")
        options["width"] = cfg.hidden[0]
    if options.get("max_kernel", 0) is None:
        options["max_kernel"] = max(input_shape[1:])
    return options


def _target(budget: Any, input_shape: Sequence[int], num_classes: int) -> int:
    """The budget as a parameter count: the number itself, or the count of the budget model."""
    if isinstance(budget, bool):
        raise UserError("budget is a parameter count or a model, not a bool")
    if isinstance(budget, Integral):
        return int(budget)
    return count_parameters(budget, input_shape, num_classes)


def _closest(family: _Family, budget: int, count: Callable[[int], int]) -> int:
    """The ``n`` whose count is closest to ``budget`` (ties: smaller count, then smaller ``n``).

    Every ``n`` of ``family.exhaustive`` is counted (those that do not build are skipped); over
    ``family.monotone`` only those of a doubling search and a bisection for the first count at or
    above the budget.
    """
    counts: dict[int, int] = {}
    failure: UserError | None = None
    for n in family.exhaustive:
        try:
            counts[n] = count(n)
        except UserError as error:  # e.g. a kernel that leaves no pixels
            failure = failure or error
    if family.monotone:
        low, last = family.monotone[0], family.monotone[-1]
        counts[low] = count(low)
        high, step = low, 1
        while counts[high] < budget and high < last:  # doubling steps: large models only when needed
            low, high = high, min(high + step, last)
            counts[high], step = count(high), 2 * step
        while high - low > 1 and counts[high] >= budget:  # counts[low] < budget <= counts[high]
            middle = (low + high) // 2
            counts[middle] = count(middle)
            low, high = (middle, high) if counts[middle] < budget else (low, middle)
    if not counts:
        raise failure or UserError("there is no candidate model to search")
    smallest, largest = min(counts, key=counts.__getitem__), max(counts, key=counts.__getitem__)
    if budget < counts[smallest]:
        raise UserError(
            f"budget {budget:,} is below the smallest candidate model "
            f"({counts[smallest]:,} parameters at {family.what} {smallest})"
        )
    if budget > counts[largest]:
        raise UserError(
            f"budget {budget:,} is above the largest candidate model ({counts[largest]:,} parameters at "
            f"{family.what} {largest}); raise the search option {family.bound}"
        )
    return min(counts, key=lambda n: (abs(counts[n] - budget), counts[n], n))


def _scaled(widths: Sequence[int], widest: int) -> list[int]:
    """``widths`` scaled so that the largest becomes ``widest``: rounded half up, at least 1."""
    top = max(widths)
    return [max(1, (2 * width * widest + top) // (2 * top)) for width in widths]


def _blocks(cfg: ModelConfig, **fields: Any) -> list[dict[str, Any]]:
    """The conv blocks of ``cfg`` as dicts of their given fields, with ``fields`` set in every block."""
    return [{**block.model_dump(exclude_unset=True), **fields} for block in cfg.blocks]


def _mlp_depth(cfg: ModelConfig, input_shape: Sequence[int], options: dict[str, int]) -> _Family:
    # every extra hidden layer adds weights, so the count grows with the depth
    return _Family(
        lambda n: resolve_model_config(cfg, hidden=[options["width"]] * n),
        range(0), range(1, options["max_depth"] + 1), "depth", "max_depth",
    )


def _mlp_width(cfg: ModelConfig, input_shape: Sequence[int], options: dict[str, int]) -> _Family:
    if not cfg.hidden:
        raise UserError("the mlp has no hidden layers, so it has no width to solve; solve its depth")
    return _Family(
        lambda n: resolve_model_config(cfg, hidden=_scaled(cfg.hidden, n)),
        range(0), range(1, options["max_width"] + 1), "width", "max_width",
    )


def _cnn_width(cfg: ModelConfig, input_shape: Sequence[int], options: dict[str, int]) -> _Family:
    # channels never shrink as W grows and the widest block's grow, while pixel counts stay the same
    channels = [block.channels for block in cfg.blocks]

    def make(n: int) -> ModelConfig:
        scaled = zip(_blocks(cfg), _scaled(channels, n), strict=True)
        return resolve_model_config(cfg, blocks=[{**block, "channels": c} for block, c in scaled])

    return _Family(make, range(0), range(1, options["max_width"] + 1), "width", "max_width")


def _cnn_kernel(cfg: ModelConfig, input_shape: Sequence[int], options: dict[str, int]) -> _Family:
    # padding and the flattened features change with the kernel, so the count need not grow with it
    return _Family(
        lambda n: resolve_model_config(cfg, blocks=_blocks(cfg, kernel=n)),
        range(1, options["max_kernel"] + 1), range(0), "kernel size", "max_kernel",
    )


def _cnn_depth(cfg: ModelConfig, input_shape: Sequence[int], options: dict[str, int]) -> _Family:
    """Depths whose count is tried one by one while the repeats shrink the feature map, bisected after.

    Each repeat of the last block maps the spatial size ``s`` to ``f(s)``, ``f`` non-decreasing, so the
    sizes after 1, 2, ... repeats are monotone in each dimension. While one shrinks, the dense layer
    after the blocks can lose more parameters than a repeat adds; once neither shrinks (from depth
    ``n`` with ``f(s_n) >= s_n``) every further repeat adds parameters and the count grows.
    """
    *head, last = cfg.blocks
    height, width = input_shape[1:]
    for block in head:
        height, width = block_output_size(height, block), block_output_size(width, block)
    limit = options["max_depth"]
    depths = range(1, limit + 1)

    def make(n: int) -> ModelConfig:
        blocks = _blocks(cfg)
        return resolve_model_config(cfg, blocks=blocks[:-1] + blocks[-1:] * n)

    exhaustive, monotone = depths, range(0)
    height, width = block_output_size(height, last), block_output_size(width, last)  # after depth 1
    for n in depths:
        next_height, next_width = block_output_size(height, last), block_output_size(width, last)
        if min(next_height, next_width) < 1:  # depth n + 1 has no pixels left
            exhaustive = range(1, n + 1)
            break
        if next_height >= height and next_width >= width:
            exhaustive, monotone = range(1, n), range(n, limit + 1)
            break
        height, width = next_height, next_width
    return _Family(make, exhaustive, monotone, "depth", "max_depth")


_FAMILIES: dict[tuple[str, str], Callable[[ModelConfig, Sequence[int], dict[str, int]], _Family]] = {
    ("mlp", "depth"): _mlp_depth,
    ("mlp", "width"): _mlp_width,
    ("cnn", "depth"): _cnn_depth,
    ("cnn", "width"): _cnn_width,
    ("cnn", "kernel"): _cnn_kernel,
}
