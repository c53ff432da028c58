"""What a trained network has learned; every function works on any torch model.

``analyze(run)`` runs them on a stored run (what ``trainlab analyze`` does). The pieces:
:func:`filters <plot_filters>`, :func:`receptive fields and top activations <top_activations>`,
:func:`embeddings <features>`, :func:`guided_backprop` and :func:`saliency`,
:func:`equivariance` and the :func:`confusion_matrix`.
"""

from __future__ import annotations

from trainlab.lazy import lazy_getattr

_HOMES = {
    "analyze": "catalog",
    "Analysis": "catalog",
    "AnalysisOptions": "catalog",
    "ANALYSES": "catalog",
    "features": "embeddings",
    "project": "embeddings",
    "plot_embeddings": "embeddings",
    "load_embeddings": "embeddings",
    "first_conv": "filters",
    "filter_grid": "filters",
    "plot_filters": "filters",
    "receptive_fields": "neurons",
    "receptive_field_box": "neurons",
    "top_activations": "neurons",
    "top_activations_per_class": "neurons",
    "class_rows": "neurons",
    "peak_activations": "neurons",
    "interesting_channels": "neurons",
    "plot_neurons": "neurons",
    "neuron_patches": "neurons",
    "guided_backprop": "attribution",
    "saliency": "attribution",
    "plot_attributions": "attribution",
    "equivariance": "equivariance",
    "plot_equivariance": "equivariance",
    "shared_conv": "equivariance",
    "predict": "confusion",
    "confusion_matrix": "confusion",
    "per_class_accuracy": "confusion",
    "plot_confusion": "confusion",
}

__all__ = sorted(_HOMES)


__getattr__ = lazy_getattr(__name__, globals(), _HOMES)
