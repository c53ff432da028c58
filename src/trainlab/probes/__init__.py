"""Probes: gradient, weight, update and activation statistics while a network trains."""

from trainlab.probes.probe import Probe, probe

__all__ = ["Probe", "probe"]
