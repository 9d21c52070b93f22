"""Statistics over training seeds, importable from every layer above (study, bench, scripts).

``intervals``: Student-t intervals, paired differences and fixed-n verdicts; ``sequential``: the
anytime-valid confidence sequence a study that adds seeds uses, p-values, Holm, seeds for 80% power.
"""

from .intervals import Direction, Interval, equivalence, interval, paired, t975, verdict

__all__ = ["Direction", "Interval", "equivalence", "interval", "paired", "t975", "verdict"]
