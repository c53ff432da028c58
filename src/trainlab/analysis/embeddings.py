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

from trainlab.errors import UserError, unknown
from trainlab.probes.embeddings import (
    EMBEDDINGS_DIR, check_layer, features, load_embeddings, penultimate_layer, sample_indices, save_embedding,
)

__all__ = [  # the probe's names are the analysis's public names too
    "EMBEDDINGS_DIR", "PROJECTIONS", "PROJECTION_NAMES", "TSNE_ITERATIONS", "TSNE_MIN_ITERATIONS", "check_layer",
    "check_tsne", "default_perplexity", "features", "load_embeddings", "penultimate_layer", "plot_embeddings", "project",
    "sample_indices", "save_embedding",
]

PROJECTIONS = ("tsne", "pca")
PROJECTION_NAMES = {"tsne": "t-SNE", "pca": "PCA"}
TSNE_ITERATIONS = 1000  # scikit-learn's default max_iter
TSNE_MIN_ITERATIONS = 250  # the least scikit-learn accepts


def project(feats: np.ndarray | torch.Tensor, method: str = "tsne", seed: int = 0,
            perplexity: float | None = None, iterations: int = TSNE_ITERATIONS) -> np.ndarray:
    """2-D projection of ``feats`` (N, D): t-SNE (PCA-initialised) or PCA, both from scikit-learn.

    t-SNE runs ``iterations`` steps (scikit-learn's ``max_iter``, at least 250) with ``perplexity``
    (below N; default :func:`default_perplexity`). PCA ignores both.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if method not in PROJECTIONS:
        raise unknown("projection", method, PROJECTIONS)
    feats = np.asarray(feats, dtype=np.float32)
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(feats)
    check_tsne(perplexity, iterations, len(feats))
    perplexity = default_perplexity(len(feats)) if perplexity is None else float(perplexity)
    tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, max_iter=iterations, random_state=seed)
    # one OpenMP thread: scikit-learn's OpenMP threads contend with torch's (two runtimes in one
    # process), which made a 40-point t-SNE take seconds instead of milliseconds
    with threadpool_limits(limits=1, user_api="openmp"):
        return tsne.fit_transform(feats)


def default_perplexity(points: int) -> float:
    """scikit-learn's 30, lowered to (points - 1) / 3 (at least 2) for fewer than 91 points."""
    return min(30.0, max(2.0, (points - 1) / 3))


def check_tsne(perplexity: float | None, iterations: int, points: int | None = None) -> None:
    """UserError unless ``perplexity`` (None: the default) is above 0 and below ``points`` (when
    given), and ``iterations`` is a whole number of at least 250 (scikit-learn's minimum)."""
    if perplexity is not None and (isinstance(perplexity, bool) or not isinstance(perplexity, (int, float))
                                   or not 0 < perplexity < float("inf")):
        raise UserError(f"perplexity must be a number above 0, got {perplexity!r}")
    if points is not None and perplexity is not None and perplexity >= points:
        raise UserError(f"perplexity {perplexity:g} must be below the number of points projected ({points}); "
                        "choose a smaller one or save more (probes.embedding_samples)")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < TSNE_MIN_ITERATIONS:
        raise UserError(f"tsne_iterations must be a whole number of at least {TSNE_MIN_ITERATIONS}, "
                        f"got {iterations!r}")


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
        ax.set_xlabel(f"{PROJECTION_NAMES.get(method, method)} 1")
        ax.set_ylabel(f"{PROJECTION_NAMES.get(method, method)} 2")
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
