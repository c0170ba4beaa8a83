"""Z-order (Morton) codes: sorting grid cells by them keeps neighbours together."""

from __future__ import annotations

import numpy as np


def morton(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Z-order codes of (row, col) pairs: sorting by them keeps neighbours together."""

    def spread(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.uint64) & np.uint64(0xFFFFFFFF)
        for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F), (2, 0x3333333333333333), (1, 0x5555555555555555)):
            v = (v | (v << np.uint64(shift))) & np.uint64(mask)
        return v

    return spread(rows) | (spread(cols) << np.uint64(1))
