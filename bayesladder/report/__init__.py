"""Reports: one self-contained HTML page (or Markdown with PNGs) of a fit's predictions, figures, diagnostics
and provenance. ``build`` computes the content; ``render`` turns it into a page."""

from bayesladder.report.build import Report, Section, build
from bayesladder.report.render import check_destination, write

__all__ = ["Report", "Section", "build", "check_destination", "write"]
