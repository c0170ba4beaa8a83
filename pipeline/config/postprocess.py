"""The ``postprocess`` section: the cleanup of the per-pixel map (majority filter, then sieve)."""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import field_validator

from pipeline.config.fields import Section, setting

# Square metres per unit: what an analyst writes for a minimum mapping unit.
AREA_UNITS = {"m2": 1.0, "m²": 1.0, "ha": 1e4, "km2": 1e6, "km²": 1e6, "ac": 4046.8564224, "acre": 4046.8564224, "acres": 4046.8564224}
_AREA = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([^\s\d.]+)\s*")
SIEVE_HINT = 'use a number of pixels such as 16, an area such as "0.5 ha" (m2, ha, km2, acres), or 0 for none'


class PostprocessConfig(Section):
    majority: int = setting(0, ge=0, le=31, hint="use an odd window size such as 3 or 5 (up to 31), or 0 for none")
    """Side in pixels of the majority (mode) filter's window, applied first; 0 = off."""
    sieve: int | str = setting(0, hint=SIEVE_HINT)
    """Minimum mapping unit, applied second: patches of fewer pixels merge into their largest
    neighbour (see ``algo/cleanup.py``); pixels, or an area such as "0.5 ha"; 0 = off."""
    connectivity: Literal[4, 8] = setting(4, hint="use 4 (edges only, as GDAL's default) or 8 (edges and corners)")
    """Which pixels of a patch touch, for the sieve: 4 (edges) or 8 (edges and corners)."""

    @field_validator("majority")
    @classmethod
    def _odd_window(cls, value: int) -> int:
        if value > 1 and value % 2 == 0:
            raise ValueError("a window must have a centre pixel")
        return value

    @field_validator("sieve")
    @classmethod
    def _pixels_or_area(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 0:
                raise ValueError("a minimum mapping unit cannot be negative")
            return value
        match = _AREA.fullmatch(value)
        if match is None or match.group(2).lower() not in AREA_UNITS:
            raise ValueError("not a number of pixels or an area with a unit we know")
        return value

    def sieve_pixels(self, pixel_area_m2: float | None) -> int:
        """The sieve in pixels: an area is the smallest whole number of pixels that covers it."""
        if isinstance(self.sieve, int):
            return self.sieve
        match = _AREA.fullmatch(self.sieve)
        area = float(match.group(1)) * AREA_UNITS[match.group(2).lower()]
        if pixel_area_m2 is None:
            raise ValueError(f'{self.sieve!r} is an area, but the grid\'s CRS is geographic (a pixel has no fixed area); give pixels, or set input.crs to a projected CRS')
        return math.ceil(area / pixel_area_m2 - 1e-9)
