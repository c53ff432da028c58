"""Atomic per-epoch checkpoints: everything needed to resume a run bit for bit.

The checkpoint holds the latest state and the one it replaced (``checkpoint.prev.pt``); each
epoch's probe rows go to a file of their own (``probes/epoch-NNNN.pt``), written once, so
saving an epoch costs the same at epoch 1 and 150. Files hold tensors and plain data only and
are read with ``weights_only``, so nothing in a run folder can run code. A file that cannot be
read is passed over with a warning that names it: the run resumes from the checkpoint before
it, or trains from scratch (see docs/reliability.md).
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from trainlab.faults import fault_point
from trainlab.probes.embeddings import EMBEDDINGS_DIR

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
PROBES = "probes"
STATE_KEYS = {"epoch", "model", "optimizer", "schedule", "rng", "history"}
_TEMPORARY = re.compile(r"\..+\.(\d+)\.tmp(\.npz)?")  # what _save_atomically and save_embedding write first


class _Damaged(Exception):
    """A run-folder file that cannot be read as what it should hold; the message names it."""


def _save_atomically(obj: Any, path: Path, previous: Path | None = None) -> None:
    """Write to a temporary file, then rename it to ``path``; the file it replaces becomes ``previous``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    torch.save(obj, tmp)
    if previous is not None and path.is_file():
        os.replace(path, previous)
    fault_point("checkpoint.rename")
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, state: dict[str, Any], probe_rows: tuple[list, list] | None = None) -> None:
    """Write ``state`` to ``run_dir/checkpoint.pt`` atomically (temp file, then rename).

    ``probe_rows``, the epoch's (statistics, histograms) rows, are written first, to the
    epoch's own file, so a checkpoint never refers to rows that are not on disk. The replaced
    checkpoint stays as ``checkpoint.prev.pt`` (see :func:`load_checkpoint`).
    """
    if probe_rows is not None:
        stats, hists = probe_rows  # histogram arrays as tensors: weights_only reads no numpy
        _save_atomically((stats, [(*h[:4], torch.from_numpy(h[4]), torch.from_numpy(h[5])) for h in hists]),
                         run_dir / PROBES / f"epoch-{state['epoch']:04d}.pt")
    _save_atomically(state, run_dir / CHECKPOINT, run_dir / PREVIOUS)


def _read(path: Path) -> Any:
    """``path`` loaded as tensors and plain data only; :class:`_Damaged` naming it when it cannot be."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, corrupt, or refused by weights_only: all the same to a resume
        reason = "not tensors and plain data only" if isinstance(error, pickle.UnpicklingError) else \
            f"{type(error).__name__}: {str(error).split('. ')[0]}"
        raise _Damaged(f"{path} ({reason})") from error


def _read_probe_rows(path: Path) -> tuple[list, list]:
    """One epoch's probe rows from :func:`save_checkpoint`'s file, histogram arrays back as numpy."""
    rows = _read(path)
    try:
        stats, hists = rows
        return list(stats), [(*h[:4], h[4].numpy(), h[5].numpy()) for h in hists]
    except (TypeError, ValueError, AttributeError, IndexError) as error:
        raise _Damaged(f"{path} (not probe rows: {error})") from error


def _read_state(path: Path) -> dict[str, Any]:
    state = _read(path)
    if not isinstance(state, dict) or not STATE_KEYS <= state.keys() or not isinstance(state["epoch"], int):
        raise _Damaged(f"{path} (not a checkpoint)")
    return state


def load_checkpoint(run_dir: Path | None, epoch: int | None = None, probes: bool = False) -> dict[str, Any] | None:
    """The last readable checkpoint in ``run_dir`` (or, with ``epoch``, the kept one of that epoch); None if none is.

    ``checkpoint.pt`` comes first, then the kept ``checkpoint.prev.pt``, which also stands in
    when a crash came between its rename and the new one's. With ``probes`` the state holds the
    probe rows of epochs ``1..epoch`` (``probe_rows``), and a checkpoint whose probe files cannot
    be read is passed over too, so those epochs train again and their rows are rewritten. Each
    damaged file is named in a warning.
    """
    if run_dir is None:
        return None
    damaged = []
    for path in (run_dir / CHECKPOINT, run_dir / PREVIOUS):
        if not path.is_file():
            continue
        try:
            state = _read_state(path)
            if epoch is not None and state["epoch"] != epoch:
                continue
            if probes:
                state["probe_rows"] = _load_probe_rows(run_dir, state["epoch"])
        except _Damaged as error:
            damaged.append(str(error))
            continue
        _warn(damaged, f"resuming from epoch {state['epoch']} of {path.name}")
        return state
    _warn(damaged, "training from scratch")
    return None


def _load_probe_rows(run_dir: Path, epochs: int) -> list[tuple[list, list]]:
    """The probe rows of epochs ``1..epochs`` saved with :func:`save_checkpoint` (empty rows where none were)."""
    paths = [run_dir / PROBES / f"epoch-{epoch:04d}.pt" for epoch in range(1, epochs + 1)]
    return [_read_probe_rows(path) if path.is_file() else ([], []) for path in paths]


def _warn(damaged: list[str], outcome: str) -> None:
    if damaged:
        warnings.warn(f"damaged run files skipped, {outcome}: {'; '.join(damaged)}", stacklevel=3)


def resume_checkpoint(run_dir: Path | None, epoch: int | None = None) -> dict[str, Any] | None:
    """The checkpoint a run resumes from, with its probe rows (:func:`load_checkpoint` with ``probes``),
    after removing the temporary files that killed writers left in ``run_dir``."""
    if run_dir is not None:
        remove_stale_temporaries(run_dir)
    return load_checkpoint(run_dir, epoch, probes=True)


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the temporary checkpoint, probe and embedding files in ``run_dir`` whose writer is no longer alive."""
    for folder in (run_dir, run_dir / PROBES, run_dir / EMBEDDINGS_DIR):
        for path in folder.glob(".*.tmp*"):
            match = _TEMPORARY.fullmatch(path.name)
            if match and not _writing(int(match[1])):
                path.unlink(missing_ok=True)


def _writing(pid: int) -> bool:
    """Whether process ``pid`` may still be writing: it is alive and not this one (which is not writing now)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0 only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, another user's
        pass
    return True


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
