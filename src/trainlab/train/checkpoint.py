"""Atomic per-epoch checkpoints: everything needed to resume a run bit for bit.

The checkpoint holds the latest state; each epoch's probe rows go to a file of their own
(``probes/epoch-NNNN.pt``), written once, so saving an epoch costs the same at epoch 1 and 150.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
PROBES = "probes"


def _save_atomically(obj: Any, path: Path, previous: Path | None = None) -> None:
    """Write to a temporary file, then rename it to ``path``; the file it replaces becomes ``previous``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    torch.save(obj, tmp)
    if previous is not None and path.is_file():
        os.replace(path, previous)
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, state: dict[str, Any], probe_rows: tuple[list, list] | None = None,
                    keep_previous: bool = False) -> None:
    """Write ``state`` to ``run_dir/checkpoint.pt`` atomically (temp file, then rename).

    ``probe_rows``, the epoch's (statistics, histograms) rows, are written first, to the
    epoch's own file, so a checkpoint never refers to rows that are not on disk. With
    ``keep_previous`` the replaced checkpoint stays as ``checkpoint.prev.pt`` (see :func:`load_checkpoint`).
    """
    if probe_rows is not None:
        _save_atomically(probe_rows, run_dir / PROBES / f"epoch-{state['epoch']:04d}.pt")
    _save_atomically(state, run_dir / CHECKPOINT, run_dir / PREVIOUS if keep_previous else None)


def load_probe_rows(run_dir: Path, epochs: int) -> list[tuple[list, list]]:
    """The probe rows of epochs ``1..epochs`` saved with :func:`save_checkpoint` (empty rows where none were)."""
    rows = []
    for epoch in range(1, epochs + 1):
        path = run_dir / PROBES / f"epoch-{epoch:04d}.pt"
        rows.append(torch.load(path, weights_only=False) if path.is_file() else ([], []))
    return rows


def load_checkpoint(run_dir: Path | None, epoch: int | None = None) -> dict[str, Any] | None:
    """The last checkpoint in ``run_dir`` (or, with ``epoch``, the kept one of that epoch); None if there is none.

    A previous checkpoint kept by ``keep_previous`` stands in when a crash came between its
    rename and the new one's.
    """
    if run_dir is None:
        return None
    for path in (run_dir / CHECKPOINT, run_dir / PREVIOUS):
        if path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=False)
            if epoch is None or state["epoch"] == epoch:
                return state
    return None


def rng_state(device: torch.device, generator: torch.Generator) -> dict[str, Any]:
    """RNG states a resumed run needs: the global torch RNGs (dropout) and the data generator."""
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device, generator: torch.Generator) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    generator.set_state(state["data"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
