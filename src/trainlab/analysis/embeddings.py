"""Embeddings: what a layer makes of a fixed sample of images, projected to 2-D and coloured by class.

During training, ``probes.embeddings_at: [0, 20, 40]`` saves the features of the same test
images at those epochs (0 is before the first step); :func:`project` and
:func:`plot_embeddings` turn them into report 003's t-SNE panels. On any model,
``features(model, x, mean, std)`` gives the penultimate layer's features directly.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from trainlab.errors import unknown
from trainlab.probes.embeddings import (  # noqa: F401 (the analysis's public names)
    EMBEDDINGS_DIR, check_layer, features, load_embeddings, penultimate_layer, sample_indices, save_embedding,
)

PROJECTIONS = ("tsne", "pca")


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
