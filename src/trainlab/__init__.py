"""trainlab: controlled deep-learning experiments from one study file.

``trainlab.fit(config)`` trains one configuration; the subpackages hold the pieces:
``trainlab.data``, ``trainlab.models``, ``trainlab.train`` and ``trainlab.store``.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["fit", "load_config", "probe", "run_study"]


def __getattr__(name: str):
    # Imported lazily so that `trainlab --help` does not wait for torch.
    if name == "fit":
        from trainlab.train import fit

        return fit
    if name == "run_study":
        from trainlab.study import run_study

        return run_study
    if name == "probe":
        from trainlab.probes import probe

        return probe
    if name == "load_config":
        from trainlab.config import load_config

        return load_config
    raise AttributeError(f"module 'trainlab' has no attribute {name!r}")
