"""``model.isodata``: ISODATA's settings (``model.method: isodata``; see ``algo/isodata.py``).

The names are those of the classic tools: ENVI's ISODATA ("number of classes min/max", "minimum
pixels in class", "maximum class stdv", "minimum class distance", "maximum merge pairs",
"maximum iterations", "change threshold") and GRASS ``i.cluster``'s (``min_size``,
``iterations``, ``convergence``). The two thresholds are in the features' units; left out, they
are measured on the sample, so that the defaults suit imagery in any units.
"""

from __future__ import annotations

from pipeline.config.fields import Section, setting

SPLIT_SD_SHARE = 0.6
"""Default ``split_sd``: this share of each feature's standard deviation over the sample."""
MERGE_DISTANCE_SHARE = 1.0
"""Default ``merge_distance``: this share of the sample's RMS feature standard deviation."""


class IsodataConfig(Section):
    k_min: int = setting(2, ge=2, le=254, hint="use an integer from 2 to model.k")
    """Fewest classes: drops and merges stop here (ENVI "number of classes, min")."""
    k_max: int | None = setting(None, ge=2, le=254, hint="use an integer from model.k to 254, or null for 2 x model.k")
    """Most classes: splits stop here; None = 2 x ``model.k`` (classic ISODATA's 2K), at most 254."""
    min_class_size: float = setting(0.001, gt=0, lt=0.5, hint="use a share of the sample such as 0.001 (0.1 %)")
    """A class with fewer pixels than this share of the sample is dropped, and a split must leave
    both halves this large (GRASS ``min_size``, 17 of ~10,000 pixels; ENVI "minimum pixels in class")."""
    split_sd: float | None = setting(None, gt=0, hint="use a positive standard deviation in the features' units, or null for 0.6 x each feature's")
    """A class whose standard deviation along a feature exceeds this is split along it (ENVI
    "maximum class stdv"); None = 0.6 x that feature's standard deviation over the sample."""
    merge_distance: float | None = setting(None, ge=0, hint="use a non-negative distance in the features' units (0: never merge), or null for the default")
    """Centres closer than this are merged (ENVI "minimum class distance"), and a split whose
    halves end closer is not made; None = 1.0 x the sample's RMS feature standard deviation."""
    max_merges: int = setting(2, ge=1, le=254, hint="use a positive integer such as 2")
    """Pairs merged per iteration at most (ENVI "maximum merge pairs", 2)."""
    iterations: int = setting(30, ge=1, le=1000, hint="use a positive integer such as 30")
    """Split and merge iterations at most (GRASS ``iterations``, 30)."""
    convergence: float = setting(0.98, gt=0, le=1, hint="use a share such as 0.98 (98 % of the pixels keep their class)")
    """Each iteration's K-Means passes stop once this share of the pixels keeps its class (GRASS
    ``convergence``, 98 %; ENVI "change threshold", 5 %, is 1 - this)."""

    def k_range(self, k: int) -> tuple[int, int]:
        """(k_min, k_max) for a start at ``k``."""
        return self.k_min, self.k_max if self.k_max is not None else min(254, 2 * k)
