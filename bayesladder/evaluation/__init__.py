"""Ranked-classification evaluation of causal LMs: task formats, scoring, an offline suite."""
