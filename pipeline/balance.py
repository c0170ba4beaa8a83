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

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import dask
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve
from rasterio.windows import Window

from .errors import DataError
from .mosaic import Mosaic, Tile, WindowRead, read

log = logging.getLogger(__name__)

WINDOW = 256  # side of an overlap window read from both tiles (half a 512 block: cheap to decode)
WINDOWS_PER_PAIR = 4  # seeded windows per overlapping pair
MIN_PAIRED = 100  # paired valid pixels a pair needs to count
PIXELS_PER_PAIR = 20_000  # paired pixels (before nodata) the statistics are computed from
QUANTILES = np.linspace(0.02, 0.98, 49)  # the quantiles matched by the "quantiles" estimator
ESTIMATOR = "quantiles"  # robust where years differ; measured against "tls" in scripts/balance_measures.py
SEAM_SPAN = 0.5  # an overlap spanning less of the tiles' side is a corner (see seam_pairs)
MAX_RATIO = 4.0  # a pair relating two tiles by a gain beyond 1/4..4 measures change, not radiometry
PRIOR = 1e-6  # weight of the prior towards identity, relative to one pair's equation
_DATE = re.compile(r"^m_\d+_[a-z]{2}_\d+_\d+_(\d{8})", re.IGNORECASE)


@dataclass(frozen=True)
class PairStats:
    """What the workers return for one overlapping pair: per band, of tile i's values x and
    tile j's values y at the same pixels."""

    i: int
    j: int
    n: int
    moments: np.ndarray
    """(5, band): mean x, mean y, var x, var y, cov(x, y)."""
    quantiles: np.ndarray
    """(2, len(QUANTILES), band): quantiles of x and of y."""


@dataclass(frozen=True)
class Balance:
    """The corrections of a mosaic's tiles and how well they close the seams."""

    method: str
    tiles: tuple[Tile, ...]
    """The tiles with their corrections (identity = gains None)."""
    groups: tuple[str, ...]
    """Per tile the name of the group sharing its correction (its acquisition date or its file)."""
    pairs: int
    isolated: int
    seam_before: tuple[float, ...]
    """Per band, RMS difference between the two tiles' values at paired overlap pixels."""
    seam_after: tuple[float, ...]
    band_count: int
    estimator: str = ESTIMATOR
    known: int | None = None
    """predict: tiles whose corrections came from the model (None in a run)."""

    @property
    def gains(self) -> np.ndarray:
        """(tile, band)."""
        return np.array([t.gains or (1.0,) * self.band_count for t in self.tiles])

    @property
    def offsets(self) -> np.ndarray:
        return np.array([t.offsets or (0.0,) * self.band_count for t in self.tiles])

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "method": self.method, "estimator": self.estimator, "pairs": self.pairs, "isolated_tiles": self.isolated,
        }
        if self.known is not None:
            doc["known_tiles"] = self.known
        doc["seam_rms_before"] = [round(v, 4) for v in self.seam_before]
        doc["seam_rms_after"] = [round(v, 4) for v in self.seam_after]
        doc["tiles"] = [
            {
                "path": recorded_path(t.path),
                "group": group,
                "window": [t.row_off, t.col_off, t.height, t.width],
                "gains": [float(g) for g in gains],
                "offsets": [float(o) for o in offsets],
            }
            for t, group, gains, offsets in zip(self.tiles, self.groups, self.gains, self.offsets)
        ]
        return doc


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """The report's view of a ``Balance.to_json`` record: all but the per-tile list."""
    doc = {key: value for key, value in record.items() if key != "tiles"}
    gains = [g for t in record.get("tiles", []) for g in t["gains"]]
    offsets = [o for t in record.get("tiles", []) for o in t["offsets"]]
    if gains:
        doc["gain_range"], doc["offset_range"] = [min(gains), max(gains)], [min(offsets), max(offsets)]
    return doc


def recorded_path(path: str) -> str:
    """A tile's path as recorded: without a URL query (it may hold a signature)."""
    return path.split("?", 1)[0]


# --- pure maths ----------------------------------------------------------------------------------


def pair_statistics(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, band) paired values → (moments (5, band), quantiles (2, Q, band)) as in ``PairStats``."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    mx, my = x64.mean(axis=0), y64.mean(axis=0)
    dx, dy = x64 - mx, y64 - my
    moments = np.stack([mx, my, (dx * dx).mean(axis=0), (dy * dy).mean(axis=0), (dx * dy).mean(axis=0)])
    quantiles = np.stack([_quantiles(x), _quantiles(y)])
    return moments, quantiles


def _quantiles(values: np.ndarray) -> np.ndarray:
    """``np.quantile(values, QUANTILES, axis=0)`` (linear interpolation) by one sort per band:
    2.6x faster here than np.quantile's partitioning for 49 quantiles."""
    ordered = np.sort(values.T, axis=1).astype(np.float64)
    position = QUANTILES * (ordered.shape[1] - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, ordered.shape[1] - 1)
    fraction = position - low
    return (ordered[:, low] * (1 - fraction) + ordered[:, high] * fraction).T


def pair_relation(
    moments: np.ndarray, quantiles: np.ndarray, *, estimator: str = ESTIMATOR
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per band ``(alpha, centre_x, centre_y)`` of the line ``y - centre_y = alpha (x - centre_x)``.

    "tls": orthogonal (total least squares) regression of the paired pixels: both tiles are
    noisy views of the same ground, so it is symmetric in x and y, unlike ordinary regression
    whose slope shrinks with the noise. "quantiles": the same line through the matched quantiles
    of x and y (histogram matching; insensitive to misregistration, not to land change).
    """
    if estimator == "tls":
        mx, my, vx, vy, cxy = moments
    elif estimator == "quantiles":
        qx, qy = quantiles
        mx, my = qx.mean(axis=0), qy.mean(axis=0)
        vx, vy = qx.var(axis=0), qy.var(axis=0)
        cxy = ((qx - mx) * (qy - my)).mean(axis=0)
    else:
        raise ValueError(f"unknown estimator {estimator!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        # The major axis of the 2 x 2 covariance: slope (vy - vx + sqrt((vy - vx)^2 + 4 c^2)) / 2c.
        alpha = (vy - vx + np.sqrt((vy - vx) ** 2 + 4 * cxy**2)) / (2 * cxy)
    alpha = np.where(cxy == 0, np.where(vx == vy, 1.0, np.nan), alpha)
    return alpha, mx, my


def solve_corrections(
    i: np.ndarray,
    j: np.ndarray,
    alpha: np.ndarray,
    centre_x: np.ndarray,
    centre_y: np.ndarray,
    n_tiles: int,
    *,
    areas: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gains and offsets ``(n_tiles, band)`` such that ``a_i x + b_i ~ a_j y + b_j`` on every pair.

    ``i``, ``j`` (pair,) tile numbers; ``alpha``, ``centre_x``, ``centre_y`` (pair, band) from
    ``pair_relation``. Sparse least squares over the pair graph (one equation per pair, per
    band), anchored by a prior of weight ``PRIOR * area`` towards identity (area-weighted mean
    log-gain and offset 0 in each connected group); a tile in no pair gets exactly the identity.
    """
    n_pairs = len(i)
    bands = alpha.shape[1] if alpha.ndim == 2 else 0
    areas = np.ones(n_tiles) if areas is None else np.asarray(areas, dtype=np.float64)
    prior = PRIOR * areas / areas.mean()
    rows = np.repeat(np.arange(n_pairs), 2)
    cols = np.column_stack([i, j]).ravel()
    signs = np.tile([1.0, -1.0], n_pairs)
    incidence = sp.csr_matrix((signs, (rows, cols)), shape=(n_pairs, n_tiles))
    # Normal equations: the graph Laplacian plus the prior's diagonal (positive definite).
    normal = (incidence.T @ incidence + sp.diags(prior)).tocsc()
    gains = np.ones((n_tiles, bands))
    offsets = np.zeros((n_tiles, bands))
    for b in range(bands):
        log_gain = np.atleast_1d(spsolve(normal, incidence.T @ np.log(alpha[:, b])))
        gains[:, b] = np.exp(log_gain)
        # Both corrected tiles agree at the centre of their paired values.
        target = gains[j, b] * centre_y[:, b] - gains[i, b] * centre_x[:, b]
        offsets[:, b] = np.atleast_1d(spsolve(normal, incidence.T @ target))
    return gains, offsets


def seam_rms(moments: np.ndarray, gi: np.ndarray, oi: np.ndarray, gj: np.ndarray, oj: np.ndarray) -> np.ndarray:
    """Per band, RMS of ``(gi x + oi) - (gj y + oj)`` over a pair's pixels, from its moments."""
    mx, my, vx, vy, cxy = moments
    mean = gi * mx + oi - gj * my - oj
    var = gi**2 * vx + gj**2 * vy - 2 * gi * gj * cxy
    return np.sqrt(np.maximum(var, 0) + mean**2)


def acquisition_groups(paths: Sequence[str]) -> tuple[str, ...]:
    """Per tile, the group sharing one correction: the date of a NAIP name, else the file itself."""
    out = []
    for path in paths:
        name = PurePosixPath(recorded_path(path)).name
        match = _DATE.match(name)
        out.append(match.group(1) if match else name)
    return tuple(out)


# --- reading the overlaps -----------------------------------------------------------------------


def overlapping_pairs(mosaic: Mosaic, members: Sequence[int] | None = None) -> list[tuple[int, int, Window]]:
    """(i, j, intersection) of every pair of tiles whose footprints overlap, i < j, found through
    the tile index (O(tiles x neighbours), never O(tiles^2)); only among ``members`` if given."""
    allowed = None if members is None else set(members)
    pairs = []
    for i, a in enumerate(mosaic.tiles):
        if allowed is not None and i not in allowed:
            continue
        for j in mosaic.index.candidates(Window(a.col_off, a.row_off, a.width, a.height)):
            if j <= i or (allowed is not None and j not in allowed):
                continue
            b = mosaic.tiles[j]
            top, left = max(a.row_off, b.row_off), max(a.col_off, b.col_off)
            bottom = min(a.row_off + a.height, b.row_off + b.height)
            right = min(a.col_off + a.width, b.col_off + b.width)
            if bottom > top and right > left:
                pairs.append((i, j, Window(left, top, right - left, bottom - top)))
    return pairs


def seam_pairs(mosaic: Mosaic, pairs: list[tuple[int, int, Window]]) -> list[tuple[int, int, Window]]:
    """The pairs worth reading: those sharing an edge (the overlap spans at least ``SEAM_SPAN`` of
    the shorter tile side along it), and each tile's largest overlap where it has no such pair.
    A corner overlap is small yet costs about as many block decodes as an edge; on a grid of
    tiles it is 4 of every 8 neighbours."""

    def span(i: int, j: int, w: Window) -> float:
        a, b = mosaic.tiles[i], mosaic.tiles[j]
        return max(w.width / min(a.width, b.width), w.height / min(a.height, b.height))

    kept = [span(i, j, w) >= SEAM_SPAN for i, j, w in pairs]
    covered = {n for (i, j, _), keep in zip(pairs, kept) if keep for n in (i, j)}
    largest: dict[int, int] = {}
    for p, (i, j, w) in enumerate(pairs):
        for n in (i, j):
            if n not in covered and (n not in largest or _area(w) > _area(pairs[largest[n]][2])):
                largest[n] = p
    for p in largest.values():
        kept[p] = True
    return [pair for pair, keep in zip(pairs, kept) if keep]


def _area(window: Window) -> int:
    return int(window.width) * int(window.height)


def pair_windows(overlap: Window, *, seed: int, i: int, j: int, origin: tuple[int, int] = (0, 0)) -> list[Window]:
    """Up to ``WINDOWS_PER_PAIR`` seeded windows of at most ``WINDOW`` pixels inside ``overlap``.

    Decoding is the cost and GDAL decodes whole blocks: where the overlap allows, a window sits
    on a multiple of ``WINDOW`` from tile i's ``origin`` (row, col), so it lies inside one 512
    block of tile i (tile j's blocks are elsewhere: up to four of them).
    """
    h, w = min(WINDOW, int(overlap.height)), min(WINDOW, int(overlap.width))
    rng = np.random.default_rng([seed, i, j])

    def starts(begin: int, length: int, size: int, anchor: int) -> np.ndarray:
        first = begin + (anchor - begin) % WINDOW
        aligned = np.arange(first, begin + length - size + 1, WINDOW)
        return aligned if len(aligned) else np.arange(begin, begin + length - size + 1)

    rows = starts(int(overlap.row_off), int(overlap.height), h, origin[0])
    cols = starts(int(overlap.col_off), int(overlap.width), w, origin[1])
    cells = len(rows) * len(cols)
    picked = rng.choice(cells, size=min(WINDOWS_PER_PAIR, cells), replace=False)
    return [Window(int(cols[c % len(cols)]), int(rows[c // len(cols)]), w, h) for c in np.sort(picked)]


def _pair_task(i: int, j: int, a: Tile, b: Tile, windows: list[Window], bands: tuple[int, ...]) -> PairStats | None:
    """Read the windows from each tile alone (the same ground seen twice) → the pair's statistics."""
    xs, ys = [], []
    for window in windows:
        # An even spread of PIXELS_PER_PAIR positions over the windows, the same on any worker:
        # sorting more for the quantiles cost more than decoding the windows.
        step = max(1, -(-int(window.height) * int(window.width) * len(windows) // PIXELS_PER_PAIR))
        x = read(WindowRead(window, (a,), bands)).reshape(len(bands), -1)[:, ::step]
        y = read(WindowRead(window, (b,), bands)).reshape(len(bands), -1)[:, ::step]
        both = ~(np.isnan(x).any(axis=0) | np.isnan(y).any(axis=0))
        xs.append(x[:, both])
        ys.append(y[:, both])
    x, y = np.concatenate(xs, axis=1), np.concatenate(ys, axis=1)
    if x.shape[1] < MIN_PAIRED:
        return None
    moments, quantiles = pair_statistics(x.T, y.T)
    return PairStats(i, j, x.shape[1], moments, quantiles)


def measure_pairs(mosaic: Mosaic, pairs: list[tuple[int, int, Window]], *, seed: int) -> list[PairStats]:
    """The statistics of each pair, one task per pair carrying its two tiles only."""
    raw = [replace(t, gains=None, offsets=None) for t in mosaic.tiles]
    tasks = [
        dask.delayed(_pair_task, pure=True)(
            i, j, raw[i], raw[j], pair_windows(w, seed=seed, i=i, j=j, origin=(raw[i].row_off, raw[i].col_off)), mosaic.bands
        )
        for i, j, w in pairs
    ]
    return [s for s in dask.compute(*tasks) if s is not None]


# --- the stage -----------------------------------------------------------------------------------


def balance(
    mosaic: Mosaic,
    *,
    method: str,
    seed: int,
    members: Sequence[int] | None = None,
    estimator: str = ESTIMATOR,
    key: str = "features.balance",
) -> tuple[Mosaic, Balance | None]:
    """The mosaic with each tile's correction on its record, and the record of them.

    ``method`` "none" returns the mosaic unchanged (and no record). ``members``: the tiles to
    balance (predict balances new tiles among themselves); the others keep their records.
    """
    if method == "none":
        return mosaic, None
    members = list(range(len(mosaic.tiles))) if members is None else list(members)
    first = mosaic.tiles[members[0]].path if members else mosaic.tiles[0].path
    if len(members) < 2:
        raise DataError(
            f"{key}: overlaps needs two or more overlapping tiles, but {first} is the only one to balance; "
            f"set {key}: none"
        )
    pairs = overlapping_pairs(mosaic, members)
    if not pairs:
        raise DataError(
            f"{key}: overlaps found no two overlapping tiles among {len(members)} (e.g. {first}); "
            f"set {key}: none, or give tiles that overlap (NAIP's buffered quarter-quads do)"
        )
    stats = measure_pairs(mosaic, seam_pairs(mosaic, pairs), seed=seed)
    if not stats:
        a, b = mosaic.tiles[pairs[0][0]].path, mosaic.tiles[pairs[0][1]].path
        raise DataError(
            f"{key}: no valid pixel where the tiles overlap ({len(pairs)} overlapping pair(s), e.g. {a} and {b}); "
            f"check input.nodata and the rasters' masks, or set {key}: none"
        )
    return _solve(mosaic, members, stats, method=method, estimator=estimator)


def _solve(mosaic: Mosaic, members: list[int], stats: list[PairStats], *, method: str, estimator: str) -> tuple[Mosaic, Balance]:
    tiles = [mosaic.tiles[m] for m in members]
    position = {m: p for p, m in enumerate(members)}
    names = acquisition_groups([t.path for t in tiles])
    group_names = sorted(set(names))
    group_of = np.array([group_names.index(g) for g in names])
    areas = np.zeros(len(group_names))
    np.add.at(areas, group_of, [t.height * t.width for t in tiles])

    gi = np.array([group_of[position[s.i]] for s in stats])
    gj = np.array([group_of[position[s.j]] for s in stats])
    alpha, cx, cy = (np.stack(v) for v in zip(*(pair_relation(s.moments, s.quantiles, estimator=estimator) for s in stats)))
    plausible = np.isfinite(alpha).all(axis=1) & (alpha > 1 / MAX_RATIO).all(axis=1) & (alpha < MAX_RATIO).all(axis=1)
    usable = (gi != gj) & plausible  # within one acquisition the shared correction cancels
    if ((gi != gj) & ~plausible).any():
        log.warning(
            "balance: %d overlapping pair(s) gave no usable relation (flat, inverted or beyond a gain of %g: "
            "land change?) and were left out", int(((gi != gj) & ~plausible).sum()), MAX_RATIO,
        )
    group_gains, group_offsets = solve_corrections(
        gi[usable], gj[usable], alpha[usable], cx[usable], cy[usable], len(group_names), areas=areas
    )

    measured = set(gi[usable]) | set(gj[usable])
    isolated = sum(1 for g in group_of if g not in measured)
    if isolated:
        log.warning("balance: %d tile(s) overlap no other tile usefully and keep their values as read", isolated)
    gains, offsets = group_gains[group_of], group_offsets[group_of]
    before = np.mean([seam_rms(s.moments, 1.0, 0.0, 1.0, 0.0) for s in stats], axis=0)
    after = np.mean(
        [seam_rms(s.moments, gains[position[s.i]], offsets[position[s.i]], gains[position[s.j]], offsets[position[s.j]]) for s in stats],
        axis=0,
    )
    new_tiles = list(mosaic.tiles)
    for p, m in enumerate(members):
        if (gains[p] != 1).any() or (offsets[p] != 0).any():  # the identity costs nothing to read
            new_tiles[m] = replace(
                mosaic.tiles[m], gains=tuple(float(g) for g in gains[p]), offsets=tuple(float(o) for o in offsets[p])
            )
    record = Balance(
        method=method,
        tiles=tuple(new_tiles[m] for m in members),
        groups=names,
        pairs=int(usable.sum()),
        isolated=isolated,
        seam_before=tuple(float(v) for v in before),
        seam_after=tuple(float(v) for v in after),
        band_count=len(mosaic.bands),
        estimator=estimator,
    )
    log.info(
        "balance: %d tile(s) in %d group(s), %d pair(s); seam RMS %s -> %s; gains %.3f..%.3f",
        len(tiles), len(group_names), record.pairs, _short(before), _short(after), gains.min(), gains.max(),
    )
    return replace(mosaic, tiles=tuple(new_tiles)), record


def _short(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def balance_for_predict(mosaic: Mosaic, record: dict[str, Any] | None, *, seed: int) -> tuple[Mosaic, Balance | None]:
    """``predict``: the model's corrections on the tiles it knows (matched by path without query);
    new tiles balanced among themselves where they overlap, else left as read."""
    if not record or record.get("method", "none") == "none":
        return mosaic, None
    known = {_match_key(t["path"]): t for t in record.get("tiles", [])}
    tiles, unknown = list(mosaic.tiles), []
    for n, tile in enumerate(tiles):
        entry = known.get(_match_key(tile.path))
        if entry is None:
            unknown.append(n)
        else:
            tiles[n] = replace(tile, gains=tuple(entry["gains"]), offsets=tuple(entry["offsets"]))
    mosaic = replace(mosaic, tiles=tuple(tiles))
    solved = None
    if len(unknown) >= 2 and overlapping_pairs(mosaic, unknown):
        estimator = record.get("estimator", ESTIMATOR)
        mosaic, solved = balance(mosaic, method="overlaps", seed=seed, members=unknown, estimator=estimator)
    elif unknown:
        log.warning(
            "balance: %d tile(s) unknown to the model overlap no other new tile and keep their values as read", len(unknown)
        )
    log.info("balance: %d tile(s) corrected as the model recorded, %d new", len(tiles) - len(unknown), len(unknown))
    return mosaic, Balance(
        method=record["method"],
        tiles=mosaic.tiles,
        groups=acquisition_groups([t.path for t in mosaic.tiles]),
        pairs=solved.pairs if solved else 0,
        isolated=solved.isolated if solved else len(unknown),
        seam_before=solved.seam_before if solved else (),
        seam_after=solved.seam_after if solved else (),
        band_count=len(mosaic.bands),
        estimator=record.get("estimator", ESTIMATOR),
        known=len(tiles) - len(unknown),
    )


def _match_key(path: str) -> str:
    path = recorded_path(path)
    return path if "://" in path or path.startswith("/vsi") else str(Path(path).resolve())
