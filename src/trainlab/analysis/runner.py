"""Analyses of a stored run: ``trainlab analyze RUN --what filters,neurons,...``.

Each analysis loads the run's trained model from its checkpoint, writes a PNG and its data
into ``<run folder>/analysis/`` and records both as artifacts in the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from trainlab.config import RunConfig, load_config
from trainlab.data import ImageData, load_data
from trainlab.errors import UserError, unknown
from trainlab.models import create_model
from trainlab.store import DEFAULT_STORE, RunStore
from trainlab.train.checkpoint import load_checkpoint

ANALYSIS_DIR = "analysis"
NEURON_CHANNELS = 8  # channels shown when none are chosen: those with the highest mean top-k activation


@dataclass
class AnalysisOptions:
    """Choices shared by the analyses; every field has a default that suits a report."""

    layer: str | None = None          # neurons: the layer to look into (default: the last conv block's activation)
    channels: list[int] | None = None  # neurons: channels to show (default: the most active ones)
    top_k: int = 9                    # neurons: images per channel
    images: int = 8                   # guided backprop, saliency, equivariance: test images used
    target: str | None = None         # guided backprop / saliency: a class index or ``layer:channel``
    projection: str = "tsne"          # embeddings: tsne or pca
    seed: int = 0


@dataclass
class Context:
    """What every analysis gets: the run, its trained model, its data and where to write."""

    run_id: str
    config: RunConfig
    model: nn.Module
    data: ImageData
    run_dir: Path
    out: Path
    options: AnalysisOptions
    written: list[tuple[str, Path, str]] = field(default_factory=list)

    def save_figure(self, name: str, fig: Figure) -> None:
        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=110)
        self.written.append((name, path, "figure"))

    def save_table(self, name: str, frame: pd.DataFrame) -> None:
        path = self.out / f"{name}.csv"
        frame.to_csv(path, index=False)
        self.written.append((f"{name}.csv", path, "table"))

    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        path = self.out / f"{name}.npz"
        np.savez_compressed(path, **arrays)
        self.written.append((f"{name}.npz", path, "data"))

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``options.images`` images of a fixed sample of the test split, and their labels."""
        from trainlab.analysis.embeddings import sample_indices

        split = self.data.test
        idx = sample_indices(len(split), self.options.images, self.options.seed)
        return split.take(idx)


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _plain_conv_chain(ctx: Context) -> bool:
    """Whether receptive fields can be computed: a Sequential chain of conv/pool/elementwise layers."""
    from trainlab.analysis.neurons import receptive_fields

    if not _has_conv(ctx.model):
        return False
    try:
        receptive_fields(ctx.model, ctx.data.input_shape)
    except UserError:
        return False
    return True


def _filters(ctx: Context) -> None:
    from trainlab.analysis.filters import first_conv, plot_filters

    name, conv = first_conv(ctx.model)
    weight = conv.weight.detach().cpu()
    ctx.save_figure("filters", plot_filters(weight, title=f"{name} filters ({weight.shape[0]})"))
    ctx.save_arrays("filters", weight=weight.numpy())


def _neurons(ctx: Context) -> None:
    from trainlab.analysis.neurons import interesting_channels, plot_neurons, top_activations

    layer = ctx.options.layer or _last_conv_output(ctx.model)
    images = ctx.data.test.x
    table = top_activations(ctx.model, layer, images, ctx.data.mean, ctx.data.std, ctx.options.channels,
                            k=ctx.options.top_k)
    channels = ctx.options.channels or interesting_channels(table, n=NEURON_CHANNELS)
    table = table[table["channel"].isin(channels)].reset_index(drop=True)
    ctx.save_figure("neurons", plot_neurons(images, table, channels))
    ctx.save_table("neurons", table)


def _attribution(ctx: Context, method: str) -> None:
    from trainlab.analysis import attribution

    x, y = ctx.sample()
    inputs = _as_float(ctx, x)
    target = _target(ctx, y)
    values = getattr(attribution, method)(ctx.model, inputs, target)
    what = (f"neuron {ctx.options.target}" if isinstance(target, tuple)
            else f"class {ctx.options.target}" if ctx.options.target else "true class")
    titles = [ctx.data.classes[int(c)] for c in y]
    fig = attribution.plot_attributions(x, values.detach().cpu(), titles=titles)
    fig.suptitle(f"{method.replace('_', ' ')} for the {what}")
    ctx.save_figure(method, fig)
    ctx.save_arrays(method, attributions=values.detach().cpu().numpy(), labels=y.cpu().numpy())


def _equivariance(ctx: Context) -> None:
    from trainlab.analysis.equivariance import equivariance, plot_equivariance

    x, _ = ctx.sample()
    inputs = _as_float(ctx, x)
    frames = []
    for transform, amount in (("shift", max(1, inputs.shape[-1] // 8)), ("rotate", 1)):
        result = equivariance(ctx.model, inputs, transform=transform, amount=amount)
        ctx.save_figure(f"equivariance_{transform}", plot_equivariance(result))
        frames.append(result.frame)
    ctx.save_table("equivariance", pd.concat(frames, ignore_index=True))


def _confusion(ctx: Context) -> None:
    from trainlab.analysis.confusion import confusion_matrix, per_class_accuracy, plot_confusion, predict

    split = ctx.data.test
    predicted = predict(ctx.model, split.x, ctx.data.mean, ctx.data.std)
    matrix = confusion_matrix(split.y.cpu(), predicted.cpu(), ctx.data.num_classes)
    ctx.save_figure("confusion", plot_confusion(matrix, ctx.data.classes, title=f"Confusion matrix, run {ctx.run_id}"))
    ctx.save_table("confusion", pd.DataFrame(matrix.numpy(), index=ctx.data.classes,
                                             columns=ctx.data.classes).reset_index(names="true"))
    ctx.save_table("per_class_accuracy", per_class_accuracy(matrix, ctx.data.classes))


def _embeddings(ctx: Context) -> None:
    from trainlab.analysis.embeddings import load_embeddings, plot_embeddings, project

    saved = load_embeddings(ctx.run_dir)
    if not saved:
        raise UserError(f"run {ctx.run_id} saved no embeddings; train it with probes.embeddings_at "
                        "(for example --set 'probes.embeddings_at=[0,5,10]')")
    method = ctx.options.projection
    projections = {epoch: project(e["features"], method, ctx.options.seed) for epoch, e in saved.items()}
    labels = next(iter(saved.values()))["labels"]
    layer = ctx.config.probes.embedding_layer or "penultimate layer"
    fig = plot_embeddings(projections, labels, ctx.data.classes, title=f"{method} of the {layer}", method=method)
    ctx.save_figure("embeddings", fig)
    ctx.save_arrays("embeddings", labels=labels, epochs=np.array(list(projections)),
                    projections=np.stack(list(projections.values())))


ANALYSES: dict[str, tuple[Callable[[Context], None], Callable[[Context], bool]]] = {
    "filters": (_filters, lambda ctx: _has_conv(ctx.model)),
    "neurons": (_neurons, _plain_conv_chain),
    "embeddings": (_embeddings, lambda ctx: bool(ctx.config.probes.embeddings_at)),
    "guided_backprop": (lambda ctx: _attribution(ctx, "guided_backprop"), lambda ctx: True),
    "saliency": (lambda ctx: _attribution(ctx, "saliency"), lambda ctx: True),
    "equivariance": (_equivariance, lambda ctx: _has_conv(ctx.model)),
    "confusion": (_confusion, lambda ctx: True),
}


NOT_APPLICABLE = {
    "filters": "its model has no convolution layer",
    "neurons": "receptive fields need a plain chain of conv, pool and elementwise layers",
    "embeddings": "it saved no embeddings (train with probes.embeddings_at)",
    "equivariance": "its model has no convolution layer",
}


def analyze(
    run: str,
    what: list[str] | str | None = None,
    store: str | Path | RunStore = DEFAULT_STORE,
    options: AnalysisOptions | None = None,
    skip_inapplicable: bool = False,
) -> pd.DataFrame:
    """Run analyses on a stored run (its id or a unique prefix) and record what they wrote.

    ``what``: names from :data:`ANALYSES` (a list or a comma-separated string); by default
    every analysis that applies to the run's model. Returns ``analysis, name, path, kind``.
    """
    names = _requested(what)
    store = store if isinstance(store, RunStore) else RunStore(store)
    ctx = _context(store, store.resolve(run), options or AnalysisOptions())
    if names is None:
        names = [name for name, (_, applies) in ANALYSES.items() if applies(ctx)]
    elif skip_inapplicable:
        names = [name for name in names if ANALYSES[name][1](ctx)]
    else:
        for name in names:
            if not ANALYSES[name][1](ctx):
                raise UserError(f"{name} does not apply to run {ctx.run_id}: " + NOT_APPLICABLE[name])
    _check_options(ctx)  # every mistake surfaces before anything is written
    rows = []
    for name in names:
        start = len(ctx.written)
        ANALYSES[name][0](ctx)
        for artifact, path, kind in ctx.written[start:]:
            store.add_artifact(ctx.run_id, artifact, path, kind)
            rows.append({"analysis": name, "name": artifact, "path": str(path), "kind": kind})
    (ctx.out / "options.json").write_text(json.dumps(ctx.options.__dict__, indent=2))
    return pd.DataFrame(rows, columns=["analysis", "name", "path", "kind"])


def _requested(what: list[str] | str | None) -> list[str] | None:
    if what is None:
        return None
    names = [w.strip() for w in (what.split(",") if isinstance(what, str) else what) if w.strip()]
    for name in names:
        if name not in ANALYSES:
            raise unknown("analysis", name, ANALYSES)
    return names or None


def _context(store: RunStore, run_id: str, options: AnalysisOptions) -> Context:
    """Load the run's config, data and the model of its last checkpoint."""
    record = store.get_run(run_id)
    config = load_config(record["config"])
    run_dir = store.run_dir(run_id)
    state = load_checkpoint(run_dir)
    if state is None:
        raise UserError(f"run {run_id} has no checkpoint yet (status {record['status']}); train it first")
    data = load_data(config.data)
    model = create_model(config.model, data.input_shape, data.num_classes)
    model.load_state_dict(state["model"])
    model.eval()
    out = run_dir / ANALYSIS_DIR
    out.mkdir(parents=True, exist_ok=True)
    return Context(run_id, config, model, data, run_dir, out, options)


def _check_options(ctx: Context) -> None:
    from trainlab.analysis.embeddings import PROJECTIONS

    options = ctx.options
    if options.projection not in PROJECTIONS:
        raise unknown("projection", options.projection, PROJECTIONS)
    if options.layer is not None:
        names = [n for n, _ in ctx.model.named_modules() if n]
        if options.layer not in names:
            raise unknown("layer", options.layer, names)
    for count, flag in ((options.top_k, "top_k"), (options.images, "images")):
        if count < 1:
            raise UserError(f"{flag} must be at least 1, got {count}")
    _target(ctx, torch.zeros(1, dtype=torch.long))


def _as_float(ctx: Context, x: torch.Tensor) -> torch.Tensor:
    from trainlab.data import to_float

    return to_float(x, ctx.data.mean, ctx.data.std)


def _target(ctx: Context, labels: torch.Tensor) -> torch.Tensor | tuple[str, int]:
    """The attribution target: the true classes, a given class, or a ``layer:channel`` neuron."""
    target = ctx.options.target
    if target is None:
        return labels
    if ":" in target:
        layer, _, channel = target.partition(":")
        names = [n for n, _ in ctx.model.named_modules() if n]
        if layer not in names:
            raise unknown("target layer", layer, names)
        if not channel.isdigit():
            raise UserError(f"target {target!r}: the channel after ':' must be a number, e.g. conv3:12")
        return layer, int(channel)
    if not target.isdigit() or int(target) >= ctx.data.num_classes:
        raise UserError(f"target {target!r} is neither a class index (0..{ctx.data.num_classes - 1}) "
                        "nor a layer:channel neuron")
    return torch.full_like(labels, int(target))


def _last_conv_output(model: nn.Module) -> str:
    """The module after which the last conv's block is activated: its ``act`` layer if it has one."""
    names = list(dict(model.named_modules()))
    convs = [n for n in names if isinstance(dict(model.named_modules())[n], nn.Conv2d)]
    last = convs[-1]
    activation = last.replace("conv", "act")
    return activation if activation in names else last
