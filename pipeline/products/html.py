"""``<stem>.report.html``: one static page to read the classes, with its PNGs beside it.

Everything comes from the COG, its model and its class report; the true-colour view is read from
the inputs the model names, through decimated reads (overviews when the files have them), on the
same grid as the labels' quicklook. No script, no network: the page opens offline and can be
zipped and mailed with its PNGs. The page is ``templates/report.html.j2``, rendered with
autoescape on; the figures are drawn on matplotlib ``Figure`` objects, so writing a report leaves
the process's pyplot state and backend alone.
"""

from __future__ import annotations

import base64
import datetime
import functools
import io
import logging
import os
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import rasterio
import yaml
from rasterio.enums import Resampling

from pipeline.algo.balance import BalanceRecord
from pipeline.algo.features import rgb_bands
from pipeline.algo.kernel import NODATA_LABEL
from pipeline.algo.model import Model
from pipeline.errors import InputError, LandcoverError
from pipeline.io.mosaic import open_mosaic, to_dask
from pipeline.io.spec import InputSpec
from pipeline.products.isodata_page import isodata_section
from pipeline.products.parts import beside, sidecar_paths, staging_dir
from pipeline.products.report import QUICKLOOK_SIDE, ClassSummary, Report
from pipeline.products.sample_page import sample_note

log = logging.getLogger(__name__)

CLOSE_PAIRS = 3  # centroid pairs listed in the "spectrally close" warning
LEGEND_MAX = 32  # classes named in the PNG legends
_NAIP_ORDER = ("band1", "band2", "band3", "band4")  # unnamed 4-band imagery: red, green, blue, NIR


def report_paths(output: Path) -> dict[str, Path]:
    """The page and its images, beside the COG."""
    suffixes = {"html": ".report.html", "map": ".map.png", "spectra": ".spectra.png"}
    return {key: beside(output, suffix) for key, suffix in suffixes.items()}


def report_for(output: str | Path) -> Path:
    """Write the HTML report of a finished run from ``OUTPUT.tif`` and its JSON sidecars."""
    output = Path(output)
    if not output.is_file():
        raise InputError(f"{output}: no such file; give the COG written by 'landcover run'")
    sidecars = sidecar_paths(output)
    model, report = Model.load(sidecars["model"]), Report.load(sidecars["report"])
    paths = report_paths(output)
    with staging_dir(output) as staging:  # the page is replaced only once it and its images are complete
        write_report(output, model, report, {key: staging / path.name for key, path in paths.items()})
        for path in paths.values():
            os.replace(staging / path.name, path)
    return paths["html"]


def write_report(
    cog: Path,
    model: Model,
    report: Report,
    paths: dict[str, Path],
    *,
    name: str | None = None,
    true_colour: np.ndarray | None = None,
) -> None:
    """The page and its two PNGs at ``paths`` ("html", "map", "spectra"); ``true_colour`` as in
    ``_true_colour_preview``. Without class means (labels written without the imagery) the
    spectra chart shows the centroids in feature units."""
    labels = _label_preview(cog)
    rgb, rgb_note = _true_colour_preview(cog, model, report, labels.shape, true_colour)
    _map_png(labels, rgb, model.palette, report.classes, paths["map"])
    _spectra_png(report, model, paths["spectra"])
    page = _page(
        name=name or cog.name,
        model=model,
        report=report,
        images={key: paths[key].name for key in ("map", "spectra")},
        rgb_note=rgb_note,
    )
    paths["html"].write_text(page, encoding="utf-8")


# --- images --------------------------------------------------------------------------------------


def _preview_shape(height: int, width: int) -> tuple[int, int]:
    scale = max(1.0, max(height, width) / QUICKLOOK_SIDE)
    return max(1, round(height / scale)), max(1, round(width / scale))


def _label_preview(cog: Path) -> np.ndarray:
    with rasterio.open(cog) as src:
        return src.read(1, out_shape=_preview_shape(src.height, src.width), resampling=Resampling.nearest)


def thumbnail_step(height: int, width: int) -> int:
    """Every how many pixels the true-colour view samples the mosaic: about QUICKLOOK_SIDE wide."""
    return max(1, -(-max(height, width) // QUICKLOOK_SIDE))


def thumbnail(block: np.ndarray, row_off: int, col_off: int, step: int) -> np.ndarray:
    """The pixels of a (band, y, x) block at mosaic rows and columns that are multiples of
    ``step``, so the thumbnails of all blocks tile the mosaic's thumbnail. A copy: a view would
    keep the whole block alive until every block is labelled."""
    return block[:, (-row_off) % step :: step, (-col_off) % step :: step].copy()


def _true_colour_preview(
    cog: Path, model: Model, report: Report, shape: tuple[int, int], true_colour: np.ndarray | None
) -> tuple[np.ndarray | None, str]:
    """RGBA uint8 of the inputs on the label preview's grid (2-98 % stretch), or None and why.

    ``true_colour`` is the (3, y, x) thumbnail a run gathered while labelling (NaN = invalid);
    without it the inputs are read again, every ``thumbnail_step`` pixels.
    """
    if true_colour is None:
        paths = list(model.source.paths or ()) if model.source else []
        settings = dict((report.config or {}).get("input") or {"paths": paths})
        settings["bands"] = None  # the red, green and blue bands need not be features
        try:
            mosaic = open_mosaic(InputSpec.from_record(settings), chunk=2048)
            with rasterio.open(cog) as src:
                if (mosaic.height, mosaic.width) != (src.height, src.width):
                    raise InputError(f"the inputs ({mosaic.width} x {mosaic.height}) no longer match {cog.name}")
        except (LandcoverError, ValueError) as exc:
            log.warning("report: no true-colour view: %s", exc)
            return None, f"True-colour view unavailable: {exc}"
        # Through the mosaic's own reader: the same masks and compositing as the run, decoded
        # block by block (GDAL's decimated reads of a large untiled-overview file took minutes).
        step = thumbnail_step(mosaic.height, mosaic.width)
        true_colour = to_dask(mosaic)[list(rgb_bands(mosaic.band_names)), ::step, ::step].compute()
        band_names = mosaic.band_names
    else:
        band_names = model.band_names
    rows = np.arange(shape[0]) * true_colour.shape[1] // shape[0]
    cols = np.arange(shape[1]) * true_colour.shape[2] // shape[1]
    out = true_colour[:, rows[:, None], cols[None, :]].astype(np.float64)
    valid = np.isfinite(out).all(axis=0)
    rgba = np.zeros((*shape, 4), dtype=np.uint8)
    if valid.any():
        low, high = np.percentile(out[:, valid], [2, 98], axis=1)
        span = np.where(high > low, high - low, 1.0)
        stretched = np.clip((np.nan_to_num(out) - low[:, None, None]) / span[:, None, None], 0, 1) * 255
        rgba[..., :3] = np.moveaxis(stretched, 0, -1).round().astype(np.uint8)
    rgba[..., 3] = np.where(valid, 255, 0)
    names = ", ".join(band_names[p] for p in rgb_bands(band_names))
    return rgba, f"True colour ({names}) of the inputs, 2-98 % stretch."


def _map_png(
    labels: np.ndarray, rgb: np.ndarray | None, palette: dict[int, tuple[int, ...]], classes: tuple[ClassSummary, ...], path: Path
) -> None:
    from matplotlib.figure import (
        Figure,  # not pyplot: the process's backend is left alone
    )
    from matplotlib.patches import Patch

    lut = np.zeros((256, 4), dtype=np.uint8)
    for label, colour in palette.items():
        lut[label] = (*colour[:3], 0 if label == NODATA_LABEL else 255)
    panels = 2 if rgb is not None else 1
    panel = 7.0  # inches per panel side; at 150 dpi about the 1024-pixel preview
    height = panel * labels.shape[0] / labels.shape[1]
    shown = classes if len(classes) <= LEGEND_MAX else ()  # more would dwarf the map; the table lists them
    legend_height, title_height = 0.3 * -(-len(shown) // 4) + 0.2, 0.4
    fig = Figure(figsize=(panel * panels + 0.2, height + legend_height + title_height))
    axes = fig.subplots(1, panels, squeeze=False)
    axes[0, 0].imshow(lut[labels], interpolation="nearest")
    axes[0, 0].set_title("classes")
    if rgb is not None:
        axes[0, 1].imshow(rgb, interpolation="nearest")
        axes[0, 1].set_title("true colour (input)")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [
        Patch(facecolor=np.array(palette[c.value][:3]) / 255, edgecolor="black", label=f"{c.value} {c.name}: {c.percent:.1f} %")
        for c in shown
    ]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), frameon=False, fontsize=10)
    total = fig.get_figheight()
    fig.subplots_adjust(left=0.01, right=0.99, wspace=0.02, bottom=legend_height / total, top=1 - title_height / total)
    fig.savefig(path, dpi=150, format="png")


def _spectra(report: Report, model: Model) -> tuple[tuple[str, ...], np.ndarray, str]:
    """What the spectra chart draws: x labels, (class, x) values and the y axis label. Each
    class's mean per input band; without means (labels written without the imagery) its
    centroid per feature, in the features' own units."""
    if report.has_means:
        means = [[np.nan if c.mean[b] is None else c.mean[b] for b in model.band_names] for c in report.classes]
        return model.band_names, np.array(means, dtype=np.float64), "class mean (input units)"
    return model.features.names, model.features.unscale(model.centroids), "class centroid (feature units)"


def _spectra_png(report: Report, model: Model, path: Path) -> None:
    from matplotlib import patheffects
    from matplotlib.figure import Figure

    names, values, ylabel = _spectra(report, model)
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    x = np.arange(len(names))
    outline = [patheffects.withStroke(linewidth=3.5, foreground="#555555")]  # pale classes stay visible
    for c, row in zip(report.classes, values):
        colour = np.array(model.palette[c.value][:3]) / 255
        ax.plot(x, row, "-o", color=colour, markeredgecolor="black", linewidth=2, path_effects=outline, label=f"{c.value} {c.name}")
    ax.set_xticks(x, names)
    ax.set_xlabel("band" if report.has_means else "feature")
    ax.set_ylabel(ylabel)
    ax.set_title("mean spectrum of each class" if report.has_means else "centroid of each class")
    ax.grid(alpha=0.3)
    if len(report.classes) <= LEGEND_MAX:
        ax.legend(fontsize=8, ncol=2 if len(report.classes) > 8 else 1, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")


def _balance_png(record: BalanceRecord, band_names: tuple[str, ...]) -> bytes:
    """A small figure: each tile's mean gain and offset on its footprint (later tiles drawn on
    top, as in the mosaic), and the seam RMS difference per band before and after."""
    import matplotlib
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    tiles = record.tiles
    fig = Figure(figsize=(9.0, 3.2))
    ax_gain, ax_offset, ax_seam = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 0.9]})
    for ax, key, label, centre in ((ax_gain, "gains", "mean gain", 1.0), (ax_offset, "offsets", "mean offset (DN)", 0.0)):
        values = np.array([np.mean(getattr(t, key)) for t in tiles])
        spread = max(float(np.abs(values - centre).max()), 1e-6)
        norm = TwoSlopeNorm(vcenter=centre, vmin=centre - spread, vmax=centre + spread)
        cmap = matplotlib.colormaps["RdBu_r"]
        for t, v in zip(tiles, values):
            row, col, h, w = t.window
            ax.add_patch(Rectangle((col, row), w, h, facecolor=cmap(norm(v)), edgecolor="black", linewidth=0.6))
        rows = [t.window[0] for t in tiles] + [t.window[0] + t.window[2] for t in tiles]
        cols = [t.window[1] for t in tiles] + [t.window[1] + t.window[3] for t in tiles]
        ax.set_xlim(min(cols), max(cols))
        ax.set_ylim(max(rows), min(rows))
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label, fontsize=9)
        fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8)
    x = np.arange(len(band_names))
    before, after = record.seam_rms_before, record.seam_rms_after
    if before:
        ax_seam.bar(x - 0.2, before, 0.4, label="before", color="#c0392b")
        ax_seam.bar(x + 0.2, after, 0.4, label="after", color="#2e86c1")
        ax_seam.set_ylim(0, 1.3 * max(max(before), max(after), 1e-6))  # room for the legend
        ax_seam.legend(fontsize=8, frameon=False, ncol=2, loc="upper center")
    ax_seam.set_xticks(x, band_names, fontsize=8)
    ax_seam.set_title("seam RMS difference (DN)", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    return buffer.getvalue()


def _balance_section(record: BalanceRecord | None, band_names: tuple[str, ...]) -> dict[str, str] | None:
    """The page's "Tile balance" section (None without balance): its sentence, and the figure
    as base64 to inline, so the page's set of files is the same with and without it."""
    if record is None:
        return None
    before, after = record.seam_rms_before, record.seam_rms_after
    seam = (
        f"seam RMS difference {np.mean(before):.2f} DN before, {np.mean(after):.2f} after "
        "(mean over bands, at the sampled overlap pixels)"
        if before
        else "no overlap was measured"
    )
    known = f", {record.known_tiles} from the model" if record.known_tiles is not None else ""
    sentence = (
        f"features.balance: {record.method} ({record.estimator}): {len(record.tiles)} tile(s){known}, "
        f"{record.pairs} overlapping pair(s), {record.isolated_tiles} tile(s) left as read; {seam}"
    )
    return {"summary": sentence, "png": base64.b64encode(_balance_png(record, band_names)).decode("ascii")}


# --- numbers -------------------------------------------------------------------------------------


def red_nir(band_names: tuple[str, ...]) -> tuple[str, str, str] | None:
    """(red band, NIR band, how they were found), or None when the imagery has no such bands."""
    lowered = [b.lower() for b in band_names]
    red = next((b for b, low in zip(band_names, lowered) if low in ("red", "r")), None)
    nir = next((b for b, low in zip(band_names, lowered) if low in ("nir", "near-infrared", "near infrared", "nir1")), None)
    if red and nir:
        return red, nir, "named in the file"
    if tuple(lowered) == _NAIP_ORDER:
        return "band1", "band4", "unnamed bands, assumed NAIP order red, green, blue, NIR"
    return None


def ndvi_of_means(classes: tuple[ClassSummary, ...], red: str, nir: str) -> list[float | None]:
    """(NIR - red) / (NIR + red) of each class's mean red and NIR (exact over all its pixels);
    None for a class without pixels, or without means."""
    values: list[float | None] = []
    for c in classes:
        r, n = (None, None) if c.mean is None else (c.mean.get(red), c.mean.get(nir))
        values.append(None if r is None or n is None or r + n == 0 else (n - r) / (n + r))
    return values


def closest_pairs(distances: np.ndarray, count: int = CLOSE_PAIRS) -> list[tuple[int, int, float]]:
    """The ``count`` closest centroid pairs as (class a, class b, distance), 1-based, closest first."""
    rows, cols = np.triu_indices(len(distances), k=1)
    order = np.argsort(distances[rows, cols], kind="stable")[:count]
    return [(int(rows[i]) + 1, int(cols[i]) + 1, float(distances[rows[i], cols[i]])) for i in order]


# --- page ----------------------------------------------------------------------------------------


@functools.cache
def _template() -> jinja2.Template:
    # StrictUndefined: a name the template misspells fails the report instead of printing nothing.
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.products", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["num"] = lambda value, digits=1: "\N{EM DASH}" if value is None else f"{value:,.{digits}f}"
    environment.filters["thousands"] = lambda value: f"{value:,}"
    return environment.get_template("report.html.j2")


def _page(*, name: str, model: Model, report: Report, images: dict[str, str], rgb_note: str) -> str:
    found = red_nir(model.band_names)
    ndvi = ndvi_of_means(report.classes, found[0], found[1]) if found else [None] * len(report.classes)
    distances = np.sqrt(((model.centroids[:, None, :] - model.centroids[None, :, :]) ** 2).sum(axis=2))
    area = report.totals.area_m2
    return _template().render(
        name=name,
        model=model,
        report=report,
        hectares=None if area is None else area / 1e4,
        rows=list(zip(report.classes, ndvi)),
        suggested=any(c.suggested_by for c in report.classes),
        red_nir=found,
        names={c.value: c.name for c in report.classes},
        images=images,
        rgb_note=rgb_note,
        pairs=closest_pairs(distances),
        median_distance=float(np.median(distances[np.triu_indices(len(distances), 1)])),
        matrix=_distance_cells(distances),
        balance=_balance_section(model.balance, model.band_names),
        isodata=isodata_section(model.fit.isodata if model.fit else None),
        unstable=bool(model.fit and model.fit.unstable),
        fit_note=_fit_note(model),
        sample_note=sample_note(model.sample_size, model.seed, model.sample_design),
        versions=", ".join(f"{k} {v}" for k, v in model.versions.items()),
        config_text=yaml.safe_dump(report.config, sort_keys=False) if report.config else "(not recorded by the run that wrote this output)",
        generated=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    )


def _distance_cells(distances: np.ndarray) -> list[list[dict[str, Any] | None]]:
    """The distance matrix's cells: distance, red shade (closer = redder) and whether it is its
    row's closest other class; None on the diagonal."""
    others = np.where(np.eye(len(distances), dtype=bool), np.inf, distances)
    span = float(distances.max()) or 1.0
    return [
        [
            None if i == j else {"distance": d, "shade": int(255 - 120 * (1 - d / span) ** 2), "closest": j == int(np.argmin(others[i]))}
            for j, d in enumerate(row)
        ]
        for i, row in enumerate(distances)
    ]


def _fit_note(model: Model) -> str:
    fit = model.fit
    inertia = f"inertia on the sample {model.inertia:.6g}."
    if fit is None:
        return f"Fit: not recorded; {inertia}"
    restarts = fit.restarts
    stability = f"{restarts['reached_best']} of {restarts['count']} reached the best inertia; " if restarts else ""
    return f"Fit: {fit.seeding or fit.init}, {fit.n_init} restart(s), {stability}{fit.n_iter} iteration(s); {inertia}"
