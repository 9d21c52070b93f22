"""Statistics over training seeds, importable from every layer above (study, bench, scripts).

``intervals``: Student-t intervals, paired differences, fixed-n verdicts and seeds needed.
"""

from .intervals import Direction, Interval, equivalence, interval, paired, seeds_needed, t975, verdict

__all__ = ["Direction", "Interval", "equivalence", "interval", "paired", "seeds_needed", "t975", "verdict"]
