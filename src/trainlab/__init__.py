"""trainlab: controlled deep-learning experiments from one study file."""

__version__ = "0.1.0"
