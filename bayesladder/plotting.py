"""Helpers shared by every figure the package draws (report, analyses, diagnostics): figures are matplotlib
``Figure`` objects made without pyplot, so drawing one never changes or touches a notebook user's backend or
their open figures, and each is returned as PNG bytes."""

from __future__ import annotations

import io

from matplotlib.figure import Figure

DPI = 90


def figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height))


def png(fig: Figure, dpi: int = DPI) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()
