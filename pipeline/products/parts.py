"""Where products are written before they are published: the staging and parts folders.

Everything is written inside folders beside the output (same filesystem, so renames are atomic)
and only renamed into place when complete, so an interrupted run never leaves a file at the
output path. The COG's compressed tiles go to a parts folder with a fixed name, kept when a run
is interrupted: ``--resume`` reuses every chunk whose record is there, once the fingerprint of
what determines the bytes (config, model, inputs, grid, codec) matches the one saved with them.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import LandcoverError, OutputError, ReadError
from pipeline.io.remote import Href

log = logging.getLogger(__name__)

PARTS_FORMAT = "landcover-parts/1"
FINGERPRINT = "fingerprint.json"
# Config sections that change the bytes of the parts (palette, names and tags are in the header).
FINGERPRINTED = ("input", "features", "sample", "model")


def check_folder(folder: Path, *, key: str) -> None:
    """Refuse, before any work, a ``folder`` that cannot be made or written, without making it:
    a run refused later (by the fit, say) must leave no empty folder behind."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise OutputError(f"{key}: cannot create folder {folder} ({existing} is a file); choose a writable place")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = f"folder {folder} is not writable" if existing == folder else f"cannot create folder {folder} ({existing} is not writable)"
        raise OutputError(f"{key}: {what}; choose a writable place")


def make_folder(folder: Path, *, key: str) -> None:
    """``folder`` and its parents, made when the first file is about to be written into it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{key}: cannot create folder {folder} ({exc.strerror}); choose a writable place") from None


@contextmanager
def staging_dir(output: Path) -> Iterator[Path]:
    """A scratch folder beside ``output`` (same filesystem, so renames are atomic), always removed."""
    path = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        yield path
    finally:
        _remove(path)


def fresh_dir(path: Path) -> Path:
    """``path`` as an empty folder (what an interrupted run left there is dropped)."""
    _remove(path)
    path.mkdir()
    return path


def parts_folder(output: Path) -> Path:
    return output.with_name(f".{output.name}.parts")


def refuse_leftover_parts(output: Path, fingerprint: dict[str, Any], *, resume: bool, hint: str) -> None:
    """Before any pixel is read: parts of an interrupted run are reused only with ``resume``, and
    only if what they were written for matches (the keys ``fingerprint`` holds so far)."""
    folder = parts_folder(output)
    if not folder.exists():
        return
    if not resume:
        raise OutputError(f"{folder}: an interrupted run left its finished parts here; {hint}")
    try:
        saved = json.loads((folder / FINGERPRINT).read_text())
    except (OSError, json.JSONDecodeError):
        saved = {}
    differs = next((key for key in fingerprint if saved.get(key) != fingerprint[key]), None)
    if differs is not None and _only_exclusions_differ(saved, fingerprint):
        # Leaving items out makes another mosaic (another sample, model and labels): nothing of
        # the stopped run can be reused, and the resumed run is the uninterrupted one.
        log.warning(
            "%s: input.exclude changed since these parts were written, so none of them can be reused; starting again",
            folder,
        )
        _remove(folder)
        return
    if differs is not None:
        raise OutputError(
            f"{folder}: its parts were written for a different {differs.replace('_', ' ')}; "
            "run with the config and inputs that wrote them, or delete the folder to start again"
        )


def _only_exclusions_differ(saved: dict[str, Any], fingerprint: dict[str, Any]) -> bool:
    """Whether the fingerprints differ in ``input.exclude`` (and so in the inputs and the grid) only."""

    def rest(doc: dict[str, Any]) -> tuple[Any, Any]:
        config = dict(doc.get("config") or {})
        config["input"] = {k: v for k, v in (config.get("input") or {}).items() if k != "exclude"}
        # The keys known now (before the fit, the model is not)
        return config, {k: doc.get(k) for k in fingerprint if k not in ("config", "grid", "input_files")}

    exclude = [(doc.get("config") or {}).get("input", {}).get("exclude") for doc in (saved, fingerprint)]
    return exclude[0] != exclude[1] and rest(saved) == rest(fingerprint)


@contextmanager
def parts_dir(output: Path, fingerprint: dict[str, Any], *, resume: bool, hint: str) -> Iterator[Path]:
    """The parts folder beside ``output``: removed once the products are published, or on a
    mistake found before any chunk was finished; otherwise (a read failure, Ctrl-C, a crash) kept
    so that ``resume`` can finish it, and the error says so."""
    folder = parts_folder(output)
    refuse_leftover_parts(output, fingerprint, resume=resume, hint=hint)
    if folder.exists():
        log.info("resuming from %s (%d finished chunk(s))", folder, len(list(folder.glob("chunk-*.npz"))))
    else:
        # Created complete under another name: a folder at this name always has its fingerprint.
        fresh = Path(tempfile.mkdtemp(prefix=folder.name, suffix=".new", dir=output.parent))
        (fresh / FINGERPRINT).write_text(json.dumps(fingerprint, indent=1) + "\n")
        os.replace(fresh, folder)
    try:
        yield folder
    except LandcoverError as exc:
        finished = len(list(folder.glob("chunk-*.npz")))
        if not finished and not isinstance(exc, ReadError):
            _remove(folder)  # nothing to resume, and the mistake must be fixed first
            raise
        raise type(exc)(f"{exc}; {finished} finished chunk(s) are kept in {folder}: {hint}") from None
    except BaseException:
        log.warning("stopped: finished parts kept in %s; run again with --resume to reuse them", folder)
        raise
    _remove(folder)


def _labelling_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config sections that change labels; input.remote (how files are reached: a raised
    retry budget, a requester-pays setting added after a 403) never changes a pixel."""
    chosen = {key: config.get(key) for key in FINGERPRINTED}
    if isinstance(chosen["input"], dict):
        chosen["input"] = {k: v for k, v in chosen["input"].items() if k != "remote"}
    return chosen


def fingerprint(
    config: dict[str, Any] | None, *, grid: dict[str, Any], inputs: list[Href], model: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What determines the bytes of the parts, as plain JSON: the config sections that change
    labels, the grid, each input's size and modification time, the model, the codec. A remote
    input stands by its redacted href: no secret is written, and a re-signed href still matches."""
    stamps = []
    for href in inputs:
        if href.remote:
            stamps.append([str(href)])
            continue
        try:
            stat = os.stat(href.gdal)
            stamps.append([str(href), stat.st_size, stat.st_mtime_ns])
        except OSError:
            stamps.append([str(href)])
    doc = {
        "format": PARTS_FORMAT,
        "codec": f"imagecodecs {metadata.version('imagecodecs')}",
        "config": _labelling_config(config or {}),
        "grid": grid,
        "input_files": stamps,
    }
    if model is not None:
        doc["model"] = model
    return json.loads(json.dumps(doc))  # tuples as lists, as read back from the file


def record_path(folder: Path, index: tuple[int, int]) -> Path:
    return folder / f"chunk-{index[0]:05d}-{index[1]:05d}.npz"


def save_record(path: Path, summary: dict[str, Any], ups: dict[str, np.ndarray]) -> None:
    """A finished chunk's summary (statistics, thumbnail and, per layer, its tile byte counts per
    level) and decimated arrays, renamed into place last: a record means its parts are complete."""
    arrays = {"stats": summary["stats"], "thumbnail": summary["thumbnail"]}
    for layer, levels in summary.items():
        if layer not in arrays:
            arrays.update({f"sizes:{layer}:{n:03d}": np.asarray(s, dtype=np.int64) for n, s in enumerate(levels)})
    arrays.update({f"up:{layer}": up for layer, up in ups.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def load_record(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """What ``save_record`` saved: the chunk's summary and decimated arrays."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in sorted(data.files)}
    summary: dict[str, Any] = {"stats": arrays["stats"], "thumbnail": arrays["thumbnail"]}
    ups = {}
    for key, array in arrays.items():
        kind, _, rest = key.partition(":")
        if kind == "sizes":
            summary.setdefault(rest.partition(":")[0], []).append(array.tolist())
        elif kind == "up":
            ups[rest] = array
    return summary, ups


def beside(output: Path, suffix: str) -> Path:
    """``labels.tif`` → ``labels<suffix>``, in the same folder."""
    stem = output.with_suffix("")
    return stem.with_name(stem.name + suffix)


def sidecar_paths(output: Path) -> dict[str, Path]:
    """The files a run writes beside its COG (the HTML report's are ``products.html.report_paths``)."""
    suffixes = {
        "model": ".model.json",
        "report": ".report.json",
        "quicklook": ".png",
        "confidence": ".confidence.tif",
        "raw": ".raw.tif",
        "legend": ".legend.json",
        "stac": ".stac-item.json",
    }
    return {key: beside(output, suffix) for key, suffix in suffixes.items()}


def publish(staged: Path, destination: Path) -> None:
    """Move a finished file into place atomically (same folder, so same filesystem)."""
    os.replace(staged, destination)


def _remove(path: Path) -> None:
    # After Ctrl-C a task still running may add a file while the folder is being removed
    # (rmtree then fails on the non-empty folder): remove until it is gone.
    for _ in range(50):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            break
        time.sleep(0.1)
