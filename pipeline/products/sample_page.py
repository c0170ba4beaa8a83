"""The page's account of how the sample was drawn, from the model's ``sample.design``."""

from __future__ import annotations

from typing import Any


def sample_note(size: int, seed: int, design: dict[str, Any] | None) -> str:
    """How the sample was drawn, in a few sentences (the model's ``sample.design``)."""
    if not design:
        return f"{size:,} sampled pixels (seed {seed}); how they were drawn was not recorded."
    text = f"{size:,} pixels (seed {seed}) from {design['windows']:,} of {design['covered']:,} windows"
    if design.get("whole"):
        return text + ": every valid pixel of the imagery."
    look = design.get("first_look")
    if look:
        levels = ", ".join(f"/{factor}: {n:,}" for factor, n in look["overview_levels"].items())
        through = f"{sum(look['overview_levels'].values()):,} of {look['tiles']:,} tile(s) through their coarsest overview ({levels})" if levels else "no overview"
        lattice = f", {look['lattice_windows']:,} window(s) read where files have none (one in {look['lattice_stride']} x {look['lattice_stride']})" if look["lattice_windows"] else ""
        text += (
            f". A first look at the whole imagery ({through}{lattice}; {look['pixels']:,} pixels, {look['passes']} pass(es)) "
            "found where its spectra are rare or unusual"
        )
    low, high = design["inclusion"]
    rate_low, rate_high = design["rates"]
    return text + (
        f"; windows were read with probability {low:.3g} to {high:.3g} ({design['certain']:,} for certain), and each gave "
        f"{100 * rate_low:.3g} % to {100 * rate_high:.3g} % of its pixels, the inverse of its probability, so every valid "
        "pixel was equally likely to be drawn (every weight 1)."
    )
