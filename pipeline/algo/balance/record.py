"""A balance as the model keeps it (its JSON ``balance``): what ``predict`` reapplies and the
report and page show."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TileCorrection:
    """One tile's correction: value × gain + offset, per band."""

    path: str
    """Redacted (no query, no credentials): the tile's identity, matched by ``predict``."""
    group: str
    """The acquisition (date) or file sharing the correction."""
    window: tuple[int, int, int, int]
    """row, col, height, width in the mosaic."""
    gains: tuple[float, ...]
    offsets: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "group": self.group, "window": list(self.window), "gains": list(self.gains), "offsets": list(self.offsets)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TileCorrection:
        return cls(doc["path"], doc["group"], tuple(doc["window"]), tuple(doc["gains"]), tuple(doc["offsets"]))


@dataclass(frozen=True)
class BalanceRecord:
    """The corrections of a mosaic's tiles and how well they close the seams."""

    method: str
    estimator: str
    pairs: int
    isolated_tiles: int
    seam_rms_before: tuple[float, ...]
    """Per band, RMS difference between the two tiles' values at paired overlap pixels."""
    seam_rms_after: tuple[float, ...]
    tiles: tuple[TileCorrection, ...]
    known_tiles: int | None = None
    """predict: tiles whose corrections came from the model (None in a run)."""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"method": self.method, "estimator": self.estimator, "pairs": self.pairs, "isolated_tiles": self.isolated_tiles}
        if self.known_tiles is not None:
            doc["known_tiles"] = self.known_tiles
        doc["seam_rms_before"] = list(self.seam_rms_before)
        doc["seam_rms_after"] = list(self.seam_rms_after)
        doc["tiles"] = [t.to_json() for t in self.tiles]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> BalanceRecord:
        return cls(
            method=doc["method"],
            estimator=doc["estimator"],
            pairs=doc["pairs"],
            isolated_tiles=doc["isolated_tiles"],
            seam_rms_before=tuple(doc.get("seam_rms_before") or ()),
            seam_rms_after=tuple(doc.get("seam_rms_after") or ()),
            tiles=tuple(TileCorrection.from_json(t) for t in doc.get("tiles", [])),
            known_tiles=doc.get("known_tiles"),
        )

    def summary(self) -> dict[str, Any]:
        """The report's view: all but the per-tile list, with the range of the gains and offsets."""
        doc = {key: value for key, value in self.to_json().items() if key != "tiles"}
        gains = [g for t in self.tiles for g in t.gains]
        offsets = [o for t in self.tiles for o in t.offsets]
        if gains:
            doc["gain_range"], doc["offset_range"] = [min(gains), max(gains)], [min(offsets), max(offsets)]
        return doc
