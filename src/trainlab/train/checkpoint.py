"""Atomic per-epoch checkpoints: everything needed to resume a run bit for bit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``run_dir/checkpoint.pt`` atomically (temp file, then rename)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{CHECKPOINT}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, run_dir / CHECKPOINT)


def load_checkpoint(run_dir: Path | None) -> dict[str, Any] | None:
    """The last checkpoint in ``run_dir``, or None if there is none."""
    if run_dir is None or not (run_dir / CHECKPOINT).is_file():
        return None
    return torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)


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
