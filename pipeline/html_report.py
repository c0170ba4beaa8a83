"""``<stem>.report.html``: one static page to read the classes, with its PNGs beside it.

Everything comes from the COG and its sidecars (the model and report JSONs); the true-colour view
is read from the inputs the model JSON names, through decimated reads (overviews when the files
have them), on the same grid as the labels' quicklook. No script, no network: the page opens
offline and can be zipped and mailed with its PNGs.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import yaml
from rasterio.enums import Resampling

from .config import InputConfig
from .errors import InputError, LandcoverError
from .label import NODATA_LABEL
from .mosaic import open_mosaic
from .report import QUICKLOOK_SIDE, rgb_bands
from .write import beside, sidecar_paths, staging_dir

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
    docs = []
    for key in ("model", "report"):
        try:
            docs.append(json.loads(sidecars[key].read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(
                f"{sidecars[key]}: cannot read the {key} JSON ({exc.__class__.__name__}); "
                f"it is written beside {output.name} by 'landcover run'"
            ) from None
    paths = report_paths(output)
    with staging_dir(output) as staging:  # the page is replaced only once it and its images are complete
        write_report(output, docs[0], docs[1], {key: staging / path.name for key, path in paths.items()})
        for path in paths.values():
            os.replace(staging / path.name, path)
    return paths["html"]


def write_report(
    cog: Path,
    model: dict[str, Any],
    report: dict[str, Any],
    paths: dict[str, Path],
    *,
    name: str | None = None,
    true_colour: np.ndarray | None = None,
) -> None:
    """The page and its two PNGs at ``paths`` ("html", "map", "spectra"); ``true_colour`` as in
    ``_true_colour_preview``."""
    import matplotlib

    matplotlib.use("Agg")

    name = name or cog.name
    labels = _label_preview(cog)
    rgb, rgb_note = _true_colour_preview(cog, model, report, labels.shape, true_colour)
    palette = {int(c): tuple(v) for c, v in model["palette"].items()}
    _map_png(labels, rgb, palette, report["classes"], paths["map"])
    _spectra_png(report["classes"], model["band_names"], palette, paths["spectra"])
    centroids = np.asarray(model["centroids"], dtype=np.float64)
    page = _page(
        name=name,
        model=model,
        report=report,
        distances=np.sqrt(((centroids[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)),
        images={key: paths[key].name for key in ("map", "spectra")},
        rgb_note=rgb_note,
        balance=_balance_section(model.get("balance"), model["band_names"]),
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
    cog: Path, model: dict[str, Any], report: dict[str, Any], shape: tuple[int, int], true_colour: np.ndarray | None
) -> tuple[np.ndarray | None, str]:
    """RGBA uint8 of the inputs on the label preview's grid (2-98 % stretch), or None and why.

    ``true_colour`` is the (3, y, x) thumbnail a run gathered while labelling (NaN = invalid);
    without it the inputs are read again, every ``thumbnail_step`` pixels.
    """
    if true_colour is None:
        settings = dict((report.get("config") or {}).get("input") or {"paths": model.get("input", {}).get("paths", [])})
        settings["bands"] = None  # the red, green and blue bands need not be features
        try:
            mosaic = open_mosaic(InputConfig.model_validate(settings), chunk=2048)
            with rasterio.open(cog) as src:
                if (mosaic.height, mosaic.width) != (src.height, src.width):
                    raise InputError(f"the inputs ({mosaic.width} x {mosaic.height}) no longer match {cog.name}")
        except (LandcoverError, ValueError) as exc:
            log.warning("report: no true-colour view: %s", exc)
            return None, f"True-colour view unavailable: {exc}"
        # Through the mosaic's own reader: the same masks and compositing as the run, decoded
        # block by block (GDAL's decimated reads of a large untiled-overview file took minutes).
        step = thumbnail_step(mosaic.height, mosaic.width)
        true_colour = mosaic.to_dask()[list(rgb_bands(mosaic.band_names)), ::step, ::step].compute()
        band_names = mosaic.band_names
    else:
        band_names = tuple(model["band_names"])
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


def _map_png(labels: np.ndarray, rgb: np.ndarray | None, palette: dict[int, tuple[int, ...]], classes: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lut = np.zeros((256, 4), dtype=np.uint8)
    for label, colour in palette.items():
        lut[label] = (*colour[:3], 0 if label == NODATA_LABEL else 255)
    panels = 2 if rgb is not None else 1
    panel = 7.0  # inches per panel side; at 150 dpi about the 1024-pixel preview
    height = panel * labels.shape[0] / labels.shape[1]
    shown = classes if len(classes) <= LEGEND_MAX else []  # more would dwarf the map; the table lists them
    legend_height, title_height = 0.3 * -(-len(shown) // 4) + 0.2, 0.4
    fig, axes = plt.subplots(1, panels, figsize=(panel * panels + 0.2, height + legend_height + title_height), squeeze=False)
    axes[0, 0].imshow(lut[labels], interpolation="nearest")
    axes[0, 0].set_title("classes")
    if rgb is not None:
        axes[0, 1].imshow(rgb, interpolation="nearest")
        axes[0, 1].set_title("true colour (input)")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [
        Patch(facecolor=np.array(palette[c["class"]][:3]) / 255, edgecolor="black", label=f"{c['class']} {c['name']}: {c['percent']:.1f} %")
        for c in shown
    ]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), frameon=False, fontsize=10)
    total = fig.get_figheight()
    fig.subplots_adjust(left=0.01, right=0.99, wspace=0.02, bottom=legend_height / total, top=1 - title_height / total)
    fig.savefig(path, dpi=150, format="png")
    plt.close(fig)


def _spectra_png(classes: list[dict], band_names: list[str], palette: dict[int, tuple[int, ...]], path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib import patheffects

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    x = np.arange(len(band_names))
    for c in classes:
        means = [np.nan if c["mean"][b] is None else c["mean"][b] for b in band_names]
        colour = np.array(palette[c["class"]][:3]) / 255
        outline = [patheffects.withStroke(linewidth=3.5, foreground="#555555")]  # pale classes stay visible
        ax.plot(x, means, "-o", color=colour, markeredgecolor="black", linewidth=2, path_effects=outline, label=f"{c['class']} {c['name']}")
    ax.set_xticks(x, band_names)
    ax.set_xlabel("band")
    ax.set_ylabel("class mean (input units)")
    ax.set_title("mean spectrum of each class")
    ax.grid(alpha=0.3)
    if len(classes) <= LEGEND_MAX:
        ax.legend(fontsize=8, ncol=2 if len(classes) > 8 else 1, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def _balance_png(record: dict[str, Any], band_names: list[str]) -> bytes:
    """A small figure: each tile's mean gain and offset on its footprint (later tiles drawn on
    top, as in the mosaic), and the seam RMS difference per band before and after
    (object-oriented matplotlib: no global pyplot state)."""
    import matplotlib
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    tiles = record["tiles"]
    fig = Figure(figsize=(9.0, 3.2))
    ax_gain, ax_offset, ax_seam = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 0.9]})
    for ax, key, label, centre in ((ax_gain, "gains", "mean gain", 1.0), (ax_offset, "offsets", "mean offset (DN)", 0.0)):
        values = np.array([np.mean(t[key]) for t in tiles])
        spread = max(float(np.abs(values - centre).max()), 1e-6)
        norm = TwoSlopeNorm(vcenter=centre, vmin=centre - spread, vmax=centre + spread)
        cmap = matplotlib.colormaps["RdBu_r"]
        for t, v in zip(tiles, values):
            row, col, h, w = t["window"]
            ax.add_patch(Rectangle((col, row), w, h, facecolor=cmap(norm(v)), edgecolor="black", linewidth=0.6))
        rows = [t["window"][0] for t in tiles] + [t["window"][0] + t["window"][2] for t in tiles]
        cols = [t["window"][1] for t in tiles] + [t["window"][1] + t["window"][3] for t in tiles]
        ax.set_xlim(min(cols), max(cols))
        ax.set_ylim(max(rows), min(rows))
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label, fontsize=9)
        fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8)
    x = np.arange(len(band_names))
    before, after = record.get("seam_rms_before") or [], record.get("seam_rms_after") or []
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


def _balance_section(record: dict[str, Any] | None, band_names: list[str]) -> str:
    """The page's "Tile balance" section (empty without balance): the figure inline, so the
    page's set of files is the same with and without it."""
    if not record:
        return ""
    png = base64.b64encode(_balance_png(record, band_names)).decode("ascii")
    before, after = record.get("seam_rms_before") or [], record.get("seam_rms_after") or []
    seam = (
        f"seam RMS difference {np.mean(before):.2f} DN before, {np.mean(after):.2f} after "
        "(mean over bands, at the sampled overlap pixels)"
        if before
        else "no overlap was measured"
    )
    known = f", {record['known_tiles']} from the model" if "known_tiles" in record else ""
    return f"""<h2>Tile balance</h2>
<p>features.balance: {_e(record['method'])} ({_e(record.get('estimator', ''))}): {len(record['tiles'])} tile(s){_e(known)},
{record['pairs']} overlapping pair(s), {record['isolated_tiles']} tile(s) left as read; {_e(seam)}.</p>
<img src="data:image/png;base64,{png}" alt="per-tile gain and offset, seam difference before and after">
<p class="note">Each tile's value v is read as gain &times; v + offset, per band (here averaged over bands);
the per-tile values are in the model JSON.</p>
"""


# --- numbers -------------------------------------------------------------------------------------


def red_nir(band_names: list[str]) -> tuple[str, str, str] | None:
    """(red band, NIR band, how they were found), or None when the imagery has no such bands."""
    lowered = [b.lower() for b in band_names]
    red = next((b for b, low in zip(band_names, lowered) if low in ("red", "r")), None)
    nir = next((b for b, low in zip(band_names, lowered) if low in ("nir", "near-infrared", "near infrared", "nir1")), None)
    if red and nir:
        return red, nir, "named in the file"
    if tuple(lowered) == _NAIP_ORDER:
        return "band1", "band4", "unnamed bands, assumed NAIP order red, green, blue, NIR"
    return None


def ndvi_of_means(classes: list[dict], red: str, nir: str) -> list[float | None]:
    """(NIR - red) / (NIR + red) of each class's mean red and NIR (exact over all its pixels)."""
    values: list[float | None] = []
    for c in classes:
        r, n = c["mean"].get(red), c["mean"].get(nir)
        values.append(None if r is None or n is None or r + n == 0 else (n - r) / (n + r))
    return values


def closest_pairs(distances: np.ndarray, count: int = CLOSE_PAIRS) -> list[tuple[int, int, float]]:
    """The ``count`` closest centroid pairs as (class a, class b, distance), 1-based, closest first."""
    rows, cols = np.triu_indices(len(distances), k=1)
    order = np.argsort(distances[rows, cols], kind="stable")[:count]
    return [(int(rows[i]) + 1, int(cols[i]) + 1, float(distances[rows[i], cols[i]])) for i in order]


# --- page ----------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 0.25em 0.6em; border: 1px solid #ddd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f3f3f3; }
.swatch { display: inline-block; width: 1.2em; height: 1.2em; border: 1px solid #444; vertical-align: middle; }
.warn { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.5em 1em; }
.closest { font-weight: bold; outline: 2px solid #c0392b; }
img { max-width: 100%; } pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
.note { color: #666; font-size: 0.9em; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: float | None, digits: int = 1) -> str:
    return "&mdash;" if value is None else f"{value:,.{digits}f}"


def _page(
    *, name: str, model: dict, report: dict, distances: np.ndarray, images: dict[str, str], rgb_note: str, balance: str = ""
) -> str:
    classes, totals, bands = report["classes"], report["totals"], model["band_names"]
    names = {c["class"]: c["name"] for c in classes}
    found = red_nir(bands)
    ndvi = ndvi_of_means(classes, found[0], found[1]) if found else [None] * len(classes)
    area = totals.get("area_m2")
    generated = datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    summary = (
        f"{len(classes)} classes over {_num(area / 1e4 if area is not None else None)} ha of valid imagery "
        f"({totals['valid_pixels']:,} pixels; {totals['nodata_pixels']:,} nodata) &middot; CRS {_e(report.get('crs'))} "
        f"&middot; fitted on {model['sample']['size']:,} sampled pixels (seed {model['sample']['seed']}) "
        f"&middot; bands {_e(', '.join(bands))}"
    )

    head = "<tr><th>class</th><th>name</th><th>pixels</th><th>area (ha)</th><th>% of area</th>"
    head += "".join(f"<th>mean {_e(b)}</th>" for b in bands)
    head += "<th>NDVI of class mean</th></tr>" if found else "</tr>"
    rows = []
    for c, v in zip(classes, ndvi):
        cells = [
            f'<td><span class="swatch" style="background:{_e(c["colour"])}"></span> {c["class"]}</td>',
            f"<td>{_e(c['name'])}</td>",
            f'<td class="num">{c["pixels"]:,}</td>',
            f'<td class="num">{_num(None if c["area_m2"] is None else c["area_m2"] / 1e4)}</td>',
            f'<td class="num">{c["percent"]:.2f}</td>',
            *(f'<td class="num">{_num(c["mean"][b])}</td>' for b in bands),
        ]
        if found:
            cells.append(f'<td class="num">{_num(v, 3)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    ndvi_note = (
        f'<p class="note">NDVI = (NIR &minus; red) / (NIR + red) of each class&rsquo;s mean {_e(found[0])} and {_e(found[1])} '
        f"({_e(found[2])}); exact over all pixels of the class, not a mean of per-pixel NDVI.</p>"
        if found
        else '<p class="note">No NDVI: the imagery has no bands named red and NIR.</p>'
    )

    pairs = closest_pairs(distances)
    nearest = {i: int(np.argsort(np.where(np.eye(len(distances), dtype=bool), np.inf, distances)[i])[0]) for i in range(len(distances))}
    span = float(distances.max()) or 1.0
    matrix_rows = []
    for i, row in enumerate(distances):
        cells = []
        for j, d in enumerate(row):
            if i == j:
                cells.append('<td class="num">&middot;</td>')
                continue
            shade = int(255 - 120 * (1 - d / span) ** 2)  # closer = redder
            cls = ' class="num closest"' if nearest[i] == j else ' class="num"'
            cells.append(f'<td{cls} style="background:rgb(255,{shade},{shade})">{d:.1f}</td>')
        matrix_rows.append(f"<tr><th>{i + 1} {_e(names[i + 1])}</th>" + "".join(cells) + "</tr>")
    matrix_head = "<tr><th></th>" + "".join(f"<th>{i} {_e(names[i])}</th>" for i in names) + "</tr>"
    pair_items = "".join(
        f"<li>{a} <b>{_e(names[a])}</b> and {b} <b>{_e(names[b])}</b>: distance {d:.1f} "
        f"({100 * d / float(np.median(distances[np.triu_indices(len(distances), 1)])):.0f} % of the median pair distance)</li>"
        for a, b, d in pairs
    )

    timings = report.get("timings_s", {})
    timing_rows = "".join(f'<tr><td>{_e(k)}</td><td class="num">{v:.2f}</td></tr>' for k, v in timings.items())
    config = report.get("config")
    config_text = yaml.safe_dump(config, sort_keys=False) if config else "(not recorded by the run that wrote this output)"
    fit = model.get("fit", {})
    restarts = fit.get("restarts")
    stability = "" if not restarts else f"{restarts['reached_best']} of {restarts['count']} reached the best inertia; "
    unstable = "" if not fit.get("unstable") else (
        '<div class="warn"><p>Unstable fit: few restarts reached the best inertia, so a run with another seed could '
        "find another optimum (another map). Raise <code>model.n_init</code> and compare.</p></div>"
    )
    versions = ", ".join(f"{k} {v}" for k, v in model.get("versions", {}).items())

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Land-cover classes: {_e(name)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Land-cover classes: {_e(name)}</h1>
<p>{summary}</p>

<h2>Map</h2>
<img src="{_e(images['map'])}" alt="class map with legend beside the true-colour input">
<p class="note">Legend: class number, name and % of the valid area. {_e(rgb_note)} Nodata is transparent.</p>

<h2>Classes</h2>
<table>
{head}
{''.join(rows)}
</table>
{ndvi_note}

<h2>Mean spectrum of each class</h2>
<img src="{_e(images['spectra'])}" alt="mean value of each band per class">

<h2>Which classes are spectrally close</h2>
<div class="warn"><p>K-Means separates classes only by their spectra: classes whose centroids are close (dark roofs and
water, shadow and dense forest) are the ones most likely mixed up. Check these pairs on the map before trusting them:</p>
<ol>{pair_items}</ol></div>
<p class="note">Euclidean distance between class centroids in input units; the closest other class of each row is outlined.</p>
<table>
{matrix_head}
{''.join(matrix_rows)}
</table>

{balance}
<h2>Run</h2>
<table>
<tr><th>stage</th><th>seconds</th></tr>
{timing_rows}
</table>
{unstable}
<p class="note">Fit: {_e(fit.get('seeding', fit.get('init', '')))}, {_e(fit.get('n_init', ''))} restart(s), {_e(stability)}{_e(fit.get('n_iter', ''))} iteration(s);
inertia on the sample {model.get('inertia', float('nan')):.6g}. Versions: {_e(versions)}.</p>
<pre>{_e(config_text)}</pre>
<p class="note">Written {_e(generated)} by landcover.</p>
</body>
</html>
"""
