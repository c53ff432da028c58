"""Reports: a study's runs as one self-contained HTML file and a Markdown version with figures.

``build_report(study)`` writes them (what ``trainlab report`` does); :mod:`.stats` holds the
confidence intervals, :mod:`.findings` the plain-language findings, :mod:`.figures` the
matplotlib figures and :mod:`.document` the rendering.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report", "collect", "report_document"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from trainlab.report import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
