"""Embeddings: what a layer makes of a fixed sample of images, projected to 2-D and coloured by class.

During training, ``probes.embeddings_at: [0, 20, 40]`` saves the features of the same test
images at those epochs (0 is before the first step); :func:`project` and
:func:`plot_embeddings` turn them into report 003's t-SNE panels. On any model,
``features(model, x, mean, std)`` gives the penultimate layer's features directly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from trainlab.data import to_float
from trainlab.errors import unknown

EMBEDDINGS_DIR = "embeddings"
PROJECTIONS = ("tsne", "pca")


def penultimate_layer(model: nn.Module) -> str:
    """Name of the last ``nn.Linear``; its *input* is the penultimate representation."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError("the model has no nn.Linear layer; name the layer whose output to embed")
    return names[-1]


def check_layer(model: nn.Module, layer: str | None) -> None:
    """Raise UserError unless ``layer`` is None or the name of one of ``model``'s modules."""
    names = [name for name, _ in model.named_modules() if name]
    if layer is not None and layer not in names:
        raise unknown("probes.embedding_layer", layer, names)


def sample_indices(n_images: int, n: int, seed: int = 0) -> torch.Tensor:
    """A fixed, sorted sample of ``n`` image indices: the same images for every run and epoch."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n_images, generator=generator)[: min(n, n_images)].sort().values


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             layer: str | None = None, batch_size: int = 512) -> torch.Tensor:
    """Flattened features of ``layer`` (default: the input of the last Linear) for uint8 images ``x``.

    The model runs in eval mode; its previous mode is restored. Returns a float32 CPU tensor (N, D).
    """
    modules = dict(model.named_modules())
    captured: list[torch.Tensor] = []
    if layer is None:
        handle = modules[penultimate_layer(model)].register_forward_pre_hook(
            lambda _m, args: captured.append(args[0].flatten(1).float().cpu()))
    else:
        check_layer(model, layer)
        handle = modules[layer].register_forward_hook(
            lambda _m, _args, out: captured.append(out.flatten(1).float().cpu()))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    mean, std = mean.to(device), std.to(device)
    try:
        for i in range(0, len(x), batch_size):
            model(to_float(x[i : i + batch_size].to(device), mean, std))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(captured)


def save_embedding(run_dir: Path, epoch: int, feats: torch.Tensor, labels: torch.Tensor,
                   indices: torch.Tensor) -> Path:
    """Write one epoch's features to ``run_dir/embeddings/epoch_XXXX.npz`` atomically."""
    folder = run_dir / EMBEDDINGS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"epoch_{epoch:04d}.npz"
    tmp = folder / f".{path.stem}.{os.getpid()}.tmp.npz"
    np.savez(tmp, features=feats.numpy(), labels=labels.cpu().numpy(), indices=indices.cpu().numpy())
    os.replace(tmp, path)
    return path


def load_embeddings(run_dir: Path) -> dict[int, dict[str, np.ndarray]]:
    """Every saved epoch of a run: ``{epoch: {"features", "labels", "indices"}}``, in epoch order."""
    out = {}
    for path in sorted((run_dir / EMBEDDINGS_DIR).glob("epoch_*.npz")):
        with np.load(path) as data:
            out[int(path.stem.split("_")[1])] = {k: data[k] for k in data.files}
    return out


def project(feats: np.ndarray | torch.Tensor, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """2-D projection of ``feats`` (N, D): t-SNE (PCA-initialised) or PCA, both from scikit-learn."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if method not in PROJECTIONS:
        raise unknown("projection", method, PROJECTIONS)
    feats = np.asarray(feats, dtype=np.float32)
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(feats)
    perplexity = min(30.0, max(2.0, (len(feats) - 1) / 3))
    return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(feats)


def plot_embeddings(projections: dict[int, np.ndarray], labels: np.ndarray, classes: list[str],
                    title: str = "Embeddings", method: str = "tsne") -> Figure:
    """One panel per epoch, points coloured by class (the same colour per class in every panel)."""
    n = len(projections)
    columns = min(n, 4)
    rows = -(-n // columns)
    fig = Figure(figsize=(3.6 * columns, 3.4 * rows + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    cmap = _class_colours(len(classes))
    for ax, (epoch, xy) in zip(axes, projections.items()):
        for c, name in enumerate(classes):
            mask = labels == c
            ax.scatter(xy[mask, 0], xy[mask, 1], s=4, color=cmap[c], label=name, alpha=0.8, linewidths=0)
        ax.set_title("before training" if epoch == 0 else f"epoch {epoch}")
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[n:]:
        ax.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", markerscale=3, title="class")
    fig.suptitle(title)
    return fig


def _class_colours(n: int) -> list:
    """Distinct colours for ``n`` classes (tab10, then tab20, then a continuous map)."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["viridis"](i / max(n - 1, 1)) for i in range(n)]
