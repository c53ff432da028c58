"""Embedding snapshots while a run trains: a layer's features for a fixed sample of test images.

``probes.embeddings_at: [0, 20, 40]`` saves, at those epochs (0 is before the first step),
the features of the same test images to ``<run folder>/embeddings/``;
:mod:`trainlab.analysis.embeddings` projects and plots them. Nothing here imports matplotlib,
so training workers stay light.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trainlab.capture import capture, check_layers
from trainlab.data import to_float

EMBEDDINGS_DIR = "embeddings"


def penultimate_layer(model: nn.Module) -> str:
    """Name of the last ``nn.Linear``; its *input* is the penultimate representation."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError("the model has no nn.Linear layer; name the layer whose output to embed")
    return names[-1]


def check_layer(model: nn.Module, layer: str | None) -> None:
    """Raise UserError unless ``layer`` is None or the name of one of ``model``'s modules."""
    if layer is not None:
        check_layers(model, [layer], "probes.embedding_layer")


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
    check_layer(model, layer)
    name = layer or penultimate_layer(model)
    device = next(model.parameters()).device
    mean, std = mean.to(device), std.to(device)
    with capture(model, [name], inputs=layer is None, stop=True, eval_mode=True) as seen:
        for i in range(0, len(x), batch_size):
            seen.run(to_float(x[i : i + batch_size].to(device), mean, std))
    return torch.cat([f.flatten(1).float() for f in seen[name]]).cpu()


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


def load_embeddings(run_dir: str | Path) -> dict[int, dict[str, np.ndarray]]:
    """Every saved epoch of a run: ``{epoch: {"features", "labels", "indices"}}``, in epoch order."""
    out = {}
    for path in sorted((Path(run_dir) / EMBEDDINGS_DIR).glob("epoch_*.npz")):
        with np.load(path, allow_pickle=False) as data:
            out[int(path.stem.split("_")[1])] = {k: data[k] for k in data.files}
    return out
