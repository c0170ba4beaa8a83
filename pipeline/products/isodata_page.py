"""The report page's "ISODATA" section: how k was chosen, from the model's ``fit.isodata`` record.

A figure of k per iteration (start at iteration 0) with the splits, merges and drops of each
iteration marked, a sentence with the settings in the features' units, and one table row per
iteration naming the classes by ISODATA's own ids (never reused; not the final class numbers,
which the restarts at the chosen k and ``model.order_by`` give).
"""

from __future__ import annotations

import base64
import io
from typing import Any

EDIT_MARKS = (("split", "^", "#2e86c1", "split"), ("merged", "v", "#d35400", "merged"), ("dropped", "x", "#7f8c8d", "dropped"))


def isodata_section(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The section's sentence, figure (base64 PNG) and rows; None when ISODATA did not run."""
    if not record:
        return None
    history = record["history"]
    counts = {key: sum(len(step[key]) for step in history) for key, *_ in EDIT_MARKS}
    ending = "converged (its last iteration changed nothing)" if record["converged"] else (
        f"stopped at model.isodata.iterations = {record['max_iterations']} while still changing classes"
    )
    thresholds = ", ".join(f"{name} {value:.3g}" for name, value in record["split_sd"].items())
    summary = (
        f"model.method: isodata started at k = {record['k_start']} (k_min {record['k_min']}, k_max {record['k_max']}) and chose "
        f"k = {record['k']} after {record['iterations']} iteration(s), {ending}: {counts['split']} split(s), "
        f"{counts['merged']} merge(s), {counts['dropped']} class(es) dropped. A class is split where its standard deviation "
        f"exceeds {thresholds}; centres closer than {record['merge_distance']:.3g} merge (at most {record['max_merges']} "
        f"pairs per iteration); classes under {record['min_size_pixels']:,} sample pixels are dropped"
    )
    return {"summary": summary, "png": base64.b64encode(_history_png(record)).decode("ascii"), "rows": [_row(step) for step in history]}


def _row(step: dict[str, Any]) -> dict[str, Any]:
    edits = [f"{c} split along {feature} into {a} and {b}" for c, feature, a, b in step["split"]]
    edits += [f"{a} and {b} merged into {m}" for a, b, m in step["merged"]]
    edits += [f"{c} dropped (too small)" for c in step["dropped"]]
    return {
        "iteration": step["iteration"], "k": step["k"], "passes": step["passes"], "changed_percent": 100 * step["changed"],
        "edits": "; ".join(edits) or "none",
    }


def _history_png(record: dict[str, Any]) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    history = record["history"]
    iterations = [0] + [step["iteration"] for step in history]
    ks = [record["k_start"]] + [step["k"] for step in history]
    fig = Figure(figsize=(6.4, 2.8))
    ax = fig.subplots()
    ax.step(iterations, ks, where="post", color="black", linewidth=1.2, label="k")
    ax.plot(iterations, ks, "o", color="black", markersize=3)
    for row, (key, marker, colour, label) in enumerate(EDIT_MARKS, start=1):
        edited = [step for step in history if step[key]]
        if edited:
            # Stacked above the line, one row per kind of edit, each marked with how many it made.
            ax.scatter([s["iteration"] for s in edited], [s["k"] + 0.4 * row for s in edited], marker=marker, color=colour, label=label, zorder=3)
            for s in edited:
                ax.annotate(str(len(s[key])), (s["iteration"], s["k"] + 0.4 * row), xytext=(5, -3), textcoords="offset points", fontsize=7, color=colour)
    low, high = min(ks) - 1, max(ks) + 2
    ax.set_ylim(low, high)
    for bound, name in ((record["k_min"], "k_min"), (record["k_max"], "k_max")):
        if low <= bound <= high:  # a bound far from the path would only squash it
            ax.axhline(bound, color="#bbbbbb", linestyle=":", linewidth=1)
            ax.annotate(name, (iterations[-1], bound), fontsize=7, color="#888888", va="bottom", ha="right")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("classes")
    ax.set_xticks(iterations if len(iterations) <= 31 else iterations[:: max(1, len(iterations) // 15)])
    ax.set_title(f"ISODATA: k = {record['k_start']} to k = {record['k']}", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    return buffer.getvalue()
