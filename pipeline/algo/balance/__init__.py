"""``features.balance: overlaps``: a per-tile, per-band gain and offset solved from where tiles overlap.

Adjacent tiles of a mosaic (NAIP quarter-quads carry a 300 m buffer) see the same ground twice,
often from different flights. Where two tiles overlap, a few seeded windows are read **from each
tile alone** and the paired pixels give, per band, a linear relation ``y = alpha * x + beta``
between the tiles' values (the estimator: ``ESTIMATOR``, see ``pair_relation``). Only small
statistics leave the workers (moments and quantiles per pair), never pixels.

The corrections ``c_i(v) = a_i * v + b_i`` are then solved jointly over the graph of pairs, per
band, by least squares (``solve_corrections``): ``log a_i - log a_j = log alpha`` for the gains,
then ``b_i - b_j = a_j * centre_y - a_i * centre_x`` for the offsets (both corrected tiles give the
same value at the centre of their paired values). A weak prior towards identity, weighted by tile
area, anchors each connected group of tiles: the area-weighted mean log-gain and mean offset stay
0, so the mosaic's overall radiometry stays where it was, and a tile that overlaps nothing keeps
exactly the identity. A correction is never a per-tile standardisation: tiles of different land
cover and the same radiometry agree where they overlap, so they keep the identity.

Tiles of one acquisition (the date in NAIP names ``m_..._YYYYMMDD``) share one correction: all
their overlaps with other dates then measure it, and overlaps within the date are not needed.
The corrections travel on the ``Tile`` records (``mosaic.read`` applies them per tile part), so
the sample, the label pass and every scheduler see the same corrected values.
"""

from pipeline.algo.balance.maths import (
    pair_relation,
    pair_statistics,
    seam_rms,
    solve_corrections,
)
from pipeline.algo.balance.pairs import (
    PairStats,
    measure_pairs,
    overlapping_pairs,
    pair_windows,
    seam_pairs,
)
from pipeline.algo.balance.record import BalanceRecord, TileCorrection
from pipeline.algo.balance.solve import (
    Balance,
    acquisition_groups,
    balance,
    balance_for_predict,
    recorded_path,
)

__all__ = [
    "Balance", "BalanceRecord", "TileCorrection", "PairStats", "acquisition_groups", "balance", "balance_for_predict", "measure_pairs", "overlapping_pairs",
    "pair_relation", "pair_statistics", "pair_windows", "recorded_path", "seam_pairs", "seam_rms", "solve_corrections",
]
