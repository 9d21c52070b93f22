"""Statistics over training seeds, importable from every layer above (study, bench, scripts).

``intervals``: Student-t intervals, paired differences and fixed-n verdicts; ``sequential``: the
anytime-valid t-mixture for unbounded numbers, p-values, Holm, seeds for 80% power; ``betting``: the
anytime-valid betting confidence sequence for numbers in a declared range; ``procedures``: which of
them a kind of number gets; ``tdist``: Student's t distribution.
"""

from .intervals import Direction, Interval, equivalence, interval, paired, t975, verdict

__all__ = ["Direction", "Interval", "equivalence", "interval", "paired", "t975", "verdict"]
