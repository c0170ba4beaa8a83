"""``landcover sweep``: fit every k on one sample and score it, to help choose k.

The sample is drawn once (one read of the imagery) by ``run``'s own ``prepare_sample``, from
the tiles as ``run`` balances them (``features.balance``), and each k is fitted by the same
``fit_kmeans`` (same restarts, same seed), so the inertia reported here for a k is the one
``run`` gets with that k. Per k we report the exact inertia on the sample, the
silhouette on a seeded subsample (it costs O(n²)), and Calinski-Harabasz and Davies-Bouldin on
the whole sample.

The suggested k is the knee of the inertia curve: both axes scaled to [0, 1], the k farthest
below the chord from the first to the last point (the "Kneedle" rule of Satopää et al., 2011),
taken on log(inertia) so that each k is judged by the fraction of the remaining error it
removes. On linear inertia the steep first steps dominate: with six planted classes swept over
2..8 the linear knee was 4 and the log knee 6 (silhouette, Calinski-Harabasz and Davies-Bouldin
all best at 6). The best silhouette is reported beside it; when there is no knee (fewer than
three k, or a curve that never bends below its chord) the best silhouette decides.

With ``model.method: isodata`` the sweep also runs ISODATA on the same sample, from ``model.k``
as ``run`` does, and marks the k it chose on every curve, with whether it lies in the suggested
range: from the knee to the best silhouette (both ends included).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import (
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)

from pipeline.algo.kernel import nearest
from pipeline.algo.kmeans import fit_kmeans
from pipeline.config import Config
from pipeline.errors import ConfigError, DataError, OutputError
from pipeline.io.imagery import mosaic_imagery
from pipeline.io.mosaic import open_mosaic
from pipeline.products.parts import check_folder, make_folder
from pipeline.runtime.scheduler import computing, local_threads
from pipeline.stages.edge import features_of, input_spec, scheduler
from pipeline.stages.fit import decider, prepare_sample, run_isodata
from pipeline.stages.run import balance_stage

if TYPE_CHECKING:
    from pipeline.stages.write import Progress

log = logging.getLogger(__name__)

SILHOUETTE_SAMPLE = 10_000  # pixels; silhouette needs all pairwise distances
K_MIN, K_MAX = 2, 254


@dataclass(frozen=True)
class Score:
    k: int
    inertia: float
    """Sum of squared distances of the sample to its nearest centroid (as ``run`` reports)."""
    silhouette: float
    calinski_harabasz: float
    davies_bouldin: float
    n_iter: int
    seconds: float
    unstable: bool | None
    """As in the model of a run: few restarts reached this k's best inertia, or two maps tie, so
    its point on the inertia curve (and the knee) may move with the seed."""


@dataclass(frozen=True)
class IsodataMark:
    """The k ISODATA chose on the sweep's sample, as ``run`` with ``model.method: isodata`` would."""

    k: int
    k_start: int
    iterations: int
    converged: bool


@dataclass(frozen=True)
class Sweep:
    scores: tuple[Score, ...]
    suggested: int
    rule: str
    """"knee and silhouette" (they agree), "knee" (they disagree: the knee wins) or "silhouette"."""
    reason: str
    knee: int | None
    best_silhouette: int
    sample_size: int
    seed: int
    sample_design: dict[str, Any]
    """How the sample was drawn (``sample.SampleRecord.to_json()``), as ``run``'s model records it."""
    n_init: int
    silhouette_sample: int
    timings: dict[str, float]
    isodata: IsodataMark | None = None

    @property
    def suggested_range(self) -> tuple[int, int]:
        """From the knee (the suggestion when there is none) to the best silhouette, smaller first."""
        ends = (self.knee if self.knee is not None else self.suggested, self.best_silhouette)
        return min(ends), max(ends)

    @property
    def isodata_in_range(self) -> bool | None:
        low, high = self.suggested_range
        return None if self.isodata is None else low <= self.isodata.k <= high

    def to_json(self) -> dict[str, Any]:
        isodata = None if self.isodata is None else {**asdict(self.isodata), "in_suggested_range": self.isodata_in_range}
        return {
            "scores": [asdict(s) for s in self.scores],
            "suggested": {
                "k": self.suggested,
                "rule": self.rule,
                "reason": self.reason,
                "knee": self.knee,
                "best_silhouette": self.best_silhouette,
                "range": list(self.suggested_range),
            },
            **({"isodata": isodata} if isodata else {}),
            "sample": {"size": self.sample_size, "seed": self.seed, "design": self.sample_design},
            "n_init": self.n_init,
            "silhouette_sample": self.silhouette_sample,
            "timings_s": {name: round(s, 3) for name, s in self.timings.items()},
        }


def parse_k(text: str) -> tuple[int, ...]:
    """'3..15', '3,5,8' or a mix ('2..4,6') → sorted distinct k; errors say how to write it."""
    ks: set[int] = set()
    for part in text.replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:\.\.(\d+))?", part)
        if not match:
            raise ConfigError(f"--k {text!r}: write a range like 3..15, a list like 3,5,8, or both (2..6,8)")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
        if high < low:
            raise ConfigError(f"--k {text!r}: the range {part} is empty; write the smaller k first, e.g. {high}..{low}")
        for k in (low, high):
            if not K_MIN <= k <= K_MAX:
                raise ConfigError(f"--k {text!r}: k = {k} is outside {K_MIN}..{K_MAX} (labels are 1..k in one byte)")
        ks.update(range(low, high + 1))
    if len(ks) < 2:
        raise ConfigError(f"--k {text!r}: give at least two values of k to compare, e.g. 3..15")
    return tuple(sorted(ks))


def sweep_paths(config: Config, out_dir: str | Path | None) -> tuple[Path, Path]:
    folder = Path(out_dir) if out_dir is not None else config.output_path.parent
    return folder / "sweep.json", folder / "sweep.png"


def sweep(
    config: Config,
    ks: tuple[int, ...],
    *,
    out_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> tuple[Sweep, Path, Path]:
    """Fit and score every k on one sample; write sweep.json and sweep.png; return all three."""
    progress = progress or (lambda stage: nullcontext())
    json_path, png_path = sweep_paths(config, out_dir)
    if config.sample.size == "all":
        raise ConfigError(
            'sample.size: "all" cannot be swept (every k would re-read the imagery many times); '
            "use --set sample.size=1000000"
        )
    _check_writable(json_path, png_path, overwrite=config.output.overwrite)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    mosaic = open_mosaic(input_spec(config.input), chunk=config.dask.chunk)
    features = features_of(config.features, mosaic.band_names)
    with computing(scheduler(config.dask)):
        mosaic, _ = balance_stage(mosaic, config, timings, progress)  # the tiles run fits on
        imagery = mosaic_imagery(mosaic)
        with progress("sample"):
            drawn, features, sample = prepare_sample(imagery, features, size=config.sample.size, seed=config.sample.seed)
        timings["sample"] = time.perf_counter() - start - timings.get("balance", 0.0)
        # On the run's scheduler: a tie the sample cannot rank draws the fixed-seed sample.
        reference, decide = features.apply(drawn.reference.T).T, decider(imagery, drawn, features)
        scores = [_score(sample, k, config, reference=reference, decide=decide, whole=drawn.record.whole) for k in ks]
    m = config.model
    timings["fit_and_score"] = sum(s.seconds for s in scores)
    chosen = None
    if m.method == "isodata":
        began = time.perf_counter()
        found = run_isodata(m, sample, features.names)
        chosen = IsodataMark(found.k, m.k, len(found.history), found.converged)
        timings["isodata"] = time.perf_counter() - began
    suggested, rule, reason, knee_k, best_sil = suggest(scores)
    timings["total"] = time.perf_counter() - start
    result = Sweep(
        scores=tuple(scores),
        suggested=suggested,
        rule=rule,
        reason=reason,
        knee=knee_k,
        best_silhouette=best_sil,
        sample_size=len(sample),
        seed=config.sample.seed,
        sample_design=drawn.record.to_json(),
        n_init=m.n_init,
        silhouette_sample=min(SILHOUETTE_SAMPLE, len(sample)),
        timings=timings,
        isodata=chosen,
    )
    _write(result, json_path, png_path, input_paths=[str(t.path) for t in mosaic.tiles])
    return result, json_path, png_path


def _score(sample: np.ndarray, k: int, config: Config, *, reference: np.ndarray, decide, whole: bool) -> Score:
    """Fit ``k`` classes to the sample as ``run`` fits them (restarts from the first look's
    ``reference``, ties decided by ``decide``), and score the fit."""
    m, seed = config.model, config.sample.seed
    began = time.perf_counter()
    try:
        fit = fit_kmeans(
            sample, seeds_from=sample, k=k, n_init=m.n_init, max_iter=m.max_iter, tol=m.tol, seed=seed, init=m.init,
            reference=reference, decide=decide, whole=whole, threads=local_threads(),
        )
    except DataError as exc:
        raise DataError(f"--k: cannot fit k = {k} ({exc}); sweep a range that stops below {k}") from None
    labels, _ = nearest(sample.T, fit.centroids, dtype=np.float64)
    score = Score(
        k=k,
        inertia=fit.inertia,
        silhouette=float(silhouette_score(sample, labels, sample_size=min(SILHOUETTE_SAMPLE, len(sample)), random_state=seed)),
        calinski_harabasz=float(calinski_harabasz_score(sample, labels)),
        davies_bouldin=float(davies_bouldin_score(sample, labels)),
        n_iter=fit.n_iter,
        seconds=time.perf_counter() - began,
        unstable=fit.restarts.unstable,
    )
    log.info("sweep: k=%d inertia %.6g silhouette %.3f (%.1f s)", k, score.inertia, score.silhouette, score.seconds)
    return score


def knee(ks: list[int] | tuple[int, ...], values: list[float] | np.ndarray) -> int | None:
    """The k farthest below the chord of the normalised, decreasing curve ``values``, or None."""
    if len(ks) < 3:
        return None
    x = np.asarray(ks, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    x = (x - x[0]) / (x[-1] - x[0])
    span = y.max() - y.min()
    if span == 0:
        return None
    y = (y - y.min()) / span
    # Signed distance below the chord from the first to the last point (up to a constant factor).
    below = (y[0] + (y[-1] - y[0]) * x) - y
    best = int(np.argmax(below))
    return int(ks[best]) if below[best] > 1e-9 else None  # rounding puts a straight line a hair off its chord


def suggest(scores: list[Score]) -> tuple[int, str, str, int | None, int]:
    """(suggested k, rule that won, reason in words, knee k or None, best-silhouette k)."""
    ks = [s.k for s in scores]
    by_k = {s.k: s for s in scores}
    inertias = np.array([s.inertia for s in scores])
    knee_k = knee(ks, np.log(inertias + 1e-9 * inertias.max()))  # + tiny: a perfect fit has inertia 0
    best = max(scores, key=lambda s: s.silhouette).k
    others = (
        f"Calinski-Harabasz is best at k = {max(scores, key=lambda s: s.calinski_harabasz).k}, "
        f"Davies-Bouldin at k = {min(scores, key=lambda s: s.davies_bouldin).k}"
    )
    if knee_k is None:
        reason = f"no knee in the log-inertia curve; k = {best} has the best silhouette ({by_k[best].silhouette:.3f}); {others}"
        return best, "silhouette", reason, None, best
    if knee_k == best:
        reason = f"the knee of the log-inertia curve and the best silhouette ({by_k[best].silhouette:.3f}) agree; {others}"
        return knee_k, "knee and silhouette", reason, knee_k, best
    reason = (
        f"knee of the log-inertia curve; the best silhouette is at k = {best} "
        f"({by_k[best].silhouette:.3f}, vs {by_k[knee_k].silhouette:.3f} at k = {knee_k}); {others}"
    )
    return knee_k, "knee", reason, knee_k, best


def format_table(result: Sweep) -> str:
    """The scores as a text table, best value of each score starred, then the suggestion."""
    scores = result.scores
    best = {
        "silhouette": max(scores, key=lambda s: s.silhouette).k,
        "calinski_harabasz": max(scores, key=lambda s: s.calinski_harabasz).k,
        "davies_bouldin": min(scores, key=lambda s: s.davies_bouldin).k,
    }

    def star(s: Score, field: str) -> str:
        return "*" if best[field] == s.k else " "

    lines = [f"{'k':>4} {'inertia':>12} {'silhouette':>11} {'calinski-harabasz':>18} {'davies-bouldin':>15} {'iter':>5} {'seconds':>8}"]
    for s in scores:
        mark = "<" if s.k == result.suggested else " "
        lines.append(
            f"{s.k:>4} {s.inertia:>12.5g} {s.silhouette:>10.3f}{star(s, 'silhouette')} "
            f"{s.calinski_harabasz:>17.1f}{star(s, 'calinski_harabasz')} {s.davies_bouldin:>14.3f}{star(s, 'davies_bouldin')} "
            f"{s.n_iter:>5} {s.seconds:>8.1f} {mark}"
        )
    lines.append(
        f"* best score (silhouette and Calinski-Harabasz: highest; Davies-Bouldin: lowest); "
        f"silhouette on {result.silhouette_sample:,} of {result.sample_size:,} sampled pixels"
    )
    lines.append(f"suggested k = {result.suggested} (rule: {result.rule}): {result.reason}")
    if result.isodata is not None:
        iso, (low, high) = result.isodata, result.suggested_range
        where = "inside" if result.isodata_in_range else "outside"
        lines.append(
            f"ISODATA (model.method: isodata) chose k = {iso.k} from k = {iso.k_start} in {iso.iterations} iteration(s), "
            f"{where} the suggested range {low}..{high}" + ("" if iso.converged else " (not converged: raise model.isodata.iterations)")
        )
    return "\n".join(lines)


def _check_writable(*paths: Path, overwrite: bool) -> None:
    folder = paths[0].parent
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out: {folder} is a file; give a folder")
    for path in paths:
        if path.exists() and not overwrite:
            raise OutputError(
                f"{path}: already exists; set output.overwrite: true (--set output.overwrite=true) or choose another --out folder"
            )
    check_folder(folder, key="--out")


def _write(result: Sweep, json_path: Path, png_path: Path, *, input_paths: list[str]) -> None:
    """Both files written under temporary names and renamed into place together."""
    make_folder(json_path.parent, key="--out")
    staged_json = json_path.with_name(f".{json_path.name}.partial")
    staged_png = png_path.with_name(f".{png_path.name}.partial")
    try:
        staged_json.write_text(json.dumps({**result.to_json(), "input": input_paths}, indent=2) + "\n")
        _plot(result, staged_png)
        os.replace(staged_json, json_path)
        os.replace(staged_png, png_path)
    finally:
        staged_json.unlink(missing_ok=True)
        staged_png.unlink(missing_ok=True)


def _plot(result: Sweep, path: Path) -> None:
    from matplotlib.figure import (
        Figure,  # not pyplot: the process's backend is left alone
    )
    from matplotlib.ticker import MaxNLocator

    ks = [s.k for s in result.scores]
    panels = [
        ("inertia", "inertia (sum of squared errors, log scale): elbow", None),
        ("silhouette", f"silhouette ({result.silhouette_sample:,}-pixel subsample; higher is better)", max),
        ("calinski_harabasz", "Calinski-Harabasz (higher is better)", max),
        ("davies_bouldin", "Davies-Bouldin (lower is better)", min),
    ]
    fig = Figure(figsize=(11, 7.5))
    axes = fig.subplots(2, 2, sharex=True)
    for ax, (field, title, better) in zip(axes.ravel(), panels):
        values = [getattr(s, field) for s in result.scores]
        ax.plot(ks, values, "-o", color="#1f4e79")
        if field == "inertia":
            ax.set_yscale("log")  # the knee is found on log(inertia); a straight chord here is its chord
            ax.plot([ks[0], ks[-1]], [values[0], values[-1]], ":", color="grey", label="chord")
            if result.knee is not None:
                ax.plot([result.knee], [values[ks.index(result.knee)]], "s", color="#c0392b", markersize=10, label=f"knee k = {result.knee}")
            ax.legend(frameon=False)
        elif better is not None:
            best = ks[values.index(better(values))]
            ax.plot([best], [better(values)], "*", color="#e67e22", markersize=14)
        ax.axvline(result.suggested, color="#c0392b", linestyle="--", alpha=0.7)
        if result.isodata is not None:
            ax.axvline(result.isodata.k, color="#27ae60", linestyle="-.", alpha=0.8, label=f"ISODATA k = {result.isodata.k}")
            ax.legend(frameon=False, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("k")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"k sweep on {result.sample_size:,} sampled pixels: suggested k = {result.suggested} ({result.rule})")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
