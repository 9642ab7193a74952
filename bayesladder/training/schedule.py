"""Learning-rate schedules: pure functions of the optimizer step (0-based; the LR used for that step)."""

from __future__ import annotations

import math


def cosine(step: int, total: int, warmup: int, peak: float, min_ratio: float = 0.1) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to ``min_ratio * peak`` at step ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def wsd(step: int, total: int, warmup: int, peak: float, decay_start: int, min_ratio: float = 0.1) -> float:
    """Warmup, stable at ``peak`` until ``decay_start``, then linear decay to ``min_ratio * peak`` at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if step < decay_start:
        return peak
    progress = min(1.0, (step - decay_start + 1) / max(1, total - decay_start))
    return peak * (1 - (1 - min_ratio) * progress)
