"""Reading where the data lives: COGs over HTTP and STAC catalogs, against a loopback Range server.

The COGs are made from the shared NAIP scenes (256-pixel blocks, six tiles side by side with a
small overlap) and served by ``http_server.RangeServer`` on 127.0.0.1; hrefs carry ``?sig=SECRET``
as a signed href does, and some credentials before the host (``http://user:pw@127.0.0.1:port/``).
Nothing is mocked: GDAL's /vsicurl/, pystac and pystac-client talk HTTP.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rasterio.warp
import yaml
from affine import Affine
from http_server import RangeServer
from rasterio.io import MemoryFile
from rasterio.shutil import copy as copy_raster
from rasterio.windows import Window
from rasters import read_labels
from test_cli import LANDCOVER
from test_resume import CHUNK_FILE, chunk_files, stop_once_labelling

from pipeline.algo.first_look import first_look
from pipeline.algo.sample import draw_sample
from pipeline.config import InputConfig, StacConfig
from pipeline.errors import InputError
from pipeline.io.mosaic import open_mosaic, read
from pipeline.io.remote import gdal_path, redact, scrub
from pipeline.io.sources import expand_paths
from pipeline.io.spec import StacQuery
from pipeline.io.stac import find_items
from pipeline.stages.edge import input_spec

SECRET = "SECRET"
SIGNED = f"sv=2026-01-01&sig={SECRET}"
RESIGNED = f"sv=2026-01-02&sig={SECRET}-RESIGNED"  # the same hrefs signed again (an expired SAS renewed)
CREDENTIALS = "user:pw"  # in the URL, before the host: http://user:pw@127.0.0.1:port/...
# What must never be written or logged: the signature (as is or percent-encoded), the credentials
# (as is, percent-encoded, or as the Basic authorization curl sends).
NEEDLES = (
    SECRET, "sig=", "sig%3D", CREDENTIALS, "user%3Apw", "pw@127.0.0.1", "pw%40127.0.0.1",
    base64.b64encode(CREDENTIALS.encode()).decode().rstrip("="),
)
GRID = (2, 2)  # rows, cols of tiles
SHAPE = (720, 928)  # the scenes' common crop
STEP = (700, 900)  # tiles overlap by 20 rows and 28 columns: the drawing order matters


# --- the site: COGs, a static catalog, an item collection, served on loopback ----------------------


def _cogs(scenes: list[Path], folder: Path) -> list[tuple[Path, dt.datetime]]:
    """Six COGs of the NAIP scenes laid on a grid, each with a datetime (from its scene's name)."""
    folder.mkdir()
    out = []
    with rasterio.open(scenes[0]) as first:
        crs, res, (x0, y0) = first.crs, first.res[0], (first.transform.c, first.transform.f)
    for n in range(GRID[0] * GRID[1]):
        i, j = divmod(n, GRID[1])
        scene = scenes[n % len(scenes)]
        with rasterio.open(scene) as src:
            data = src.read(window=Window(0, 0, SHAPE[1], SHAPE[0]))
        when = dt.datetime.strptime(scene.stem.rsplit("_", 1)[1], "%Y%m%d").replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=n)
        transform = Affine(res, 0, x0 + j * STEP[1] * res, 0, -res, y0 - i * STEP[0] * res)
        profile = dict(driver="GTiff", height=SHAPE[0], width=SHAPE[1], count=4, dtype="uint8", crs=crs, transform=transform, nodata=0, photometric="MINISBLACK")
        path = folder / f"m_{n:02d}.tif"
        with MemoryFile() as memory, memory.open(**profile) as tmp:
            tmp.write(data)
            copy_raster(tmp, path, driver="COG", BLOCKSIZE=256, COMPRESS="DEFLATE")
        out.append((path, when))
    return out


def _item(path: Path, when: dt.datetime, href: str, *, proj: bool = True) -> pystac.Item:
    with rasterio.open(path) as src:
        bounds, transform, shape = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds), src.transform, src.shape
    west, south, east, north = bounds
    geometry = {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]]}
    properties = {"proj:code": "EPSG:26914", "proj:transform": list(transform)[:6], "proj:shape": list(shape)} if proj else {}
    item = pystac.Item(path.stem, geometry, list(bounds), when, properties, collection="naip-test")
    item.add_asset("image", pystac.Asset(href, media_type=pystac.MediaType.COG, roles=["data"]))
    return item


@pytest.fixture(scope="module")
def site(tmp_path_factory, naip_scenes):
    root = tmp_path_factory.mktemp("site")
    cogs = _cogs(naip_scenes, root / "cogs")
    with RangeServer(root) as server:
        items = [_item(path, when, server.href(path, SIGNED)) for path, when in cogs]
        catalog = pystac.Catalog("naip-test", "NAIP COGs on loopback")
        collection = pystac.Collection("naip-test", "test", pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]), pystac.TemporalExtent([[None, None]])))
        collection.add_items([item.clone() for item in items])
        catalog.add_child(collection)
        catalog.normalize_hrefs(str(root / "catalog"))
        catalog.save(pystac.CatalogType.SELF_CONTAINED)
        server.items, server.cogs = items, cogs
        server.catalog = server.href(root / "catalog" / "catalog.json")
        yield server


def _item_collection(site, name: str, items: list[pystac.Item]) -> str:
    path = site.root / name
    path.write_text(json.dumps(pystac.ItemCollection(items).to_dict()))
    return site.href(path)


def _landcover_run(folder: Path, input_section: dict, env: dict | None = None) -> subprocess.CompletedProcess:
    folder.mkdir(exist_ok=True)
    doc = {
        "input": input_section,
        "sample": {"size": 2000},
        "model": {"k": 4, "n_init": 1},
        "output": {"path": "out/labels.tif"},
        "dask": {"chunk": 1024},
    }
    (folder / "run.yaml").write_text(yaml.safe_dump(doc))
    return subprocess.run(
        [str(LANDCOVER), "run", "run.yaml"], capture_output=True, text=True, cwd=folder, timeout=300, env={**os.environ, **(env or {})}
    )


def _scan(folder: Path, logs: dict[str, str]) -> tuple[set[str], dict[str, list[str]]]:
    """Every file under ``folder`` (recursively, hidden files and folders such as the parts folder
    included) and every log, searched for the NEEDLES: the files' paths (relative to ``folder``),
    and where a secret was found, which."""
    scanned, leaks = set(), {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            scanned.add(path.relative_to(folder).as_posix())
            data = path.read_bytes()
            if found := [n for n in NEEDLES if n.encode() in data]:
                leaks[path.relative_to(folder).as_posix()] = found
    for name, text in logs.items():
        if found := [n for n in NEEDLES if n in text]:
            leaks[name] = found
    return scanned, leaks


def _with_credentials(site, query: str) -> list[str]:
    """The COGs' hrefs, signed with ``query`` and with the credentials in the URL."""
    return [site.href(path, query).replace("http://", f"http://{CREDENTIALS}@", 1) for path, _ in site.cogs]


REMOTE_CHUNKS = 12  # the mosaic of the COGs is 1420 x 1828: 3 x 4 chunks of 512


def _paths_config(folder: Path, paths: list[str]) -> Path:
    """A run of ``paths`` (balanced: the tiles overlap) in 512-pixel chunks labelled one at a time."""
    folder.mkdir(exist_ok=True)
    doc = {
        "input": {"paths": paths},
        "features": {"balance": "overlaps"},
        "sample": {"size": 2000},
        "model": {"k": 4, "n_init": 1},
        "output": {"path": "out/labels.tif"},
        "dask": {"chunk": 512, "workers": 1},
    }
    (folder / "run.yaml").write_text(yaml.safe_dump(doc))
    return folder / "run.yaml"


def _landcover(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LANDCOVER), "run", "run.yaml", *args], capture_output=True, text=True, cwd=folder, timeout=300)


def _error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and done.stderr.endswith(lines[0] + "\n"), done.stderr
    return lines[0]


# --- pure: names and redaction --------------------------------------------------------------------


@pytest.mark.parametrize(
    "href, expected",
    [
        ("https://naip.blob.core.windows.net/naip/m_1.tif?st=2026&se=2026&sp=rl&sig=abc%2Bdef", "https://naip.blob.core.windows.net/naip/m_1.tif"),
        ("/vsicurl/https://b.s3.amazonaws.com/k.tif?X-Amz-Signature=abc&X-Amz-Credential=AKIA", "https://b.s3.amazonaws.com/k.tif"),
        ("https://user:password@host/a.tif#frag", "https://host/a.tif"),
        ("/vsicurl?max_retry=3&url=https%3A%2F%2Fhost%2Fa.tif%3Fsig%3Dx", "https://host/a.tif"),
        ("/vsis3/naip-analytic/nd/m_1.tif", "s3://naip-analytic/nd/m_1.tif"),
        ("s3://naip-analytic/nd/2020/m_1.tif", "s3://naip-analytic/nd/2020/m_1.tif"),
        ("/data/odd?name.tif", "/data/odd?name.tif"),  # a local file name, not a query
    ],
)
def test_redact_drops_queries_and_credentials(href, expected):
    assert redact(href) == expected


def test_urls_map_to_gdal_handlers():
    assert gdal_path("https://h/a.tif?sig=x") == "/vsicurl/https://h/a.tif?sig=x"
    assert gdal_path("s3://bucket/key.tif") == "/vsis3/bucket/key.tif"
    assert gdal_path("az://container/blob.tif") == "/vsiaz/container/blob.tif"
    assert gdal_path("gs://bucket/key.tif") == "/vsigs/bucket/key.tif"
    assert gdal_path("/vsis3/bucket/key.tif") == "/vsis3/bucket/key.tif"
    assert scrub("'/vsicurl/http://h/a.tif?sig=SECRET' not recognized") == "'http://h/a.tif' not recognized"


def test_paths_or_stac_and_what_is_not_stac_are_refused(tmp_path):
    from pipeline.config import parse_config
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match=r"input: give either input.paths \(files, globs, URLs\) or input.stac"):
        parse_config({"input": {"paths": ["a.tif"], "stac": {"source": "catalog.json"}}})
    (tmp_path / "catalog.json").write_text('{"type": "Topology"}')
    with pytest.raises(InputError, match="input.stac.source: .*catalog.json is not a STAC catalog, collection, item collection or item"):
        find_items(StacQuery(source=str(tmp_path / "catalog.json")))


def test_a_glob_over_a_url_is_refused_with_the_url_redacted():
    with pytest.raises(InputError, match=r"input.paths: 'https://h/naip/\*.tif' is a glob over a URL") as caught:
        expand_paths(("https://h/naip/*.tif?sig=SECRET",))
    assert SECRET not in str(caught.value)


# --- over HTTP --------------------------------------------------------------------------------------


def test_stac_run_over_http_gives_the_local_labels_and_never_shows_the_secret(site, tmp_path):
    # Drawing order of the search: oldest first, the newest on top; the local run lists the files so.
    order = sorted(site.cogs, key=lambda c: c[1])
    busy = f"/cogs/{order[-1][0].name}"
    site.faults.status[busy] = [503]  # retried, and GDAL's retry warning must not show the href's query
    with ThreadPoolExecutor(2) as pool:
        remote = pool.submit(_landcover_run, tmp_path / "http", {"stac": {"source": site.catalog, "collections": ["naip-test"]}})
        local = pool.submit(_landcover_run, tmp_path / "local", {"paths": [str(p) for p, _ in order]})
        remote, local = remote.result(), local.result()
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    assert np.array_equal(read_labels(tmp_path / "http/out/labels.tif"), read_labels(tmp_path / "local/out/labels.tif"))
    assert site.faults.status[busy] == []
    assert f"stac: {len(site.cogs)} item(s)" in remote.stderr and "newest on top" in remote.stderr
    assert any(SECRET in q for q in site.traffic.queries)  # the signed hrefs were used ...
    # ... and appear in no log line, nor in any file: model, report, legend, STAC, HTML, PNGs, and
    # whatever a hidden folder (the parts, the staging) might have left.
    scanned, leaks = _scan(tmp_path / "http" / "out", {"stderr": remote.stderr, "stdout": remote.stdout})
    assert {"labels.tif", "labels.model.json", "labels.report.json", "labels.report.html", "labels.png"} <= scanned
    assert leaks == {}
    model = json.loads((tmp_path / "http/out/labels.model.json").read_text())["input"]
    assert model["stac"]["source"] == site.catalog and model["items"] == len(site.cogs)
    assert "paths" not in model  # the search, not the hrefs


def test_urls_in_paths_place_tiles_as_local_files_do(site):
    local = open_mosaic(input_spec(InputConfig(paths=tuple(str(p) for p, _ in site.cogs))), chunk=1024)
    remote = open_mosaic(input_spec(InputConfig(paths=tuple(site.href(p, SIGNED) for p, _ in site.cogs))), chunk=1024)
    assert [(t.row_off, t.col_off, t.height, t.width) for t in remote.tiles] == [(t.row_off, t.col_off, t.height, t.width) for t in local.tiles]
    assert remote.tiles[0].path.gdal.startswith("/vsicurl/http://127.0.0.1:")
    window = Window(800, 600, 300, 300)  # across four tiles
    assert np.array_equal(read(remote.plan(window)), read(local.plan(window)), equal_nan=True)


def test_open_reads_one_file_and_the_sample_a_fraction_of_the_files(site):
    items = [item.clone() for item in site.items]
    for item in items:  # URLs no earlier test has read: GDAL caches what it fetched, per URL
        item.assets["image"].href += "&attempt=fraction"
    source = _item_collection(site, "fraction.json", items)
    site.traffic.reset()
    spec = input_spec(InputConfig(stac=StacConfig(source=source)))
    mosaic = open_mosaic(spec, chunk=1024)
    tifs = {path for path in site.traffic.requests if path.endswith(".tif")}
    assert len(tifs) == 1  # the others are placed from proj metadata, never opened
    site.traffic.reset()
    # A state in miniature: at state scale 256 strata are a few % of the 512 windows; here
    # 4 strata of the 42 windows of 256 (the COGs' block size).
    sample = draw_sample(mosaic, size=1024, seed=0, window=256, min_windows=4).pixels
    assert len(sample) == 1024
    sent = sum(n for path, n in site.traffic.bytes.items() if path.endswith(".tif"))
    total = sum(p.stat().st_size for p, _ in site.cogs)
    assert 0 < sent < 0.25 * total, (sent, total)


def test_the_first_look_reads_each_cog_s_coarsest_overview_in_a_few_requests(site):
    items = [item.clone() for item in site.items]
    for item in items:  # URLs no earlier test has read: GDAL caches what it fetched, per URL
        item.assets["image"].href += "&attempt=look"
    mosaic = open_mosaic(input_spec(InputConfig(stac=StacConfig(source=_item_collection(site, "look.json", items)))), chunk=1024)
    site.traffic.reset()
    seen = first_look(mosaic, window=256)
    assert seen.record.levels == {4: len(site.cogs)} and seen.record.lattice_windows == 0  # 232 x 180 of 928 x 720
    per_tile = [site.traffic.requests[f"/{path.parent.name}/{path.name}"] for path, _ in site.cogs]
    sent = sum(n for path, n in site.traffic.bytes.items() if path.endswith(".tif"))
    assert max(per_tile) <= 3, per_tile  # the header, then the overview's one block
    assert sent < 0.1 * sum(path.stat().st_size for path, _ in site.cogs)
    local = first_look(open_mosaic(input_spec(InputConfig(paths=[str(path) for path, _ in site.cogs])), chunk=1024), window=256)
    np.testing.assert_array_equal(seen.boost, local.boost)  # what the look saw over HTTP is what it sees on disk


def test_a_worker_process_retries_503_with_its_own_settings(site):
    from distributed import Client, LocalCluster

    path, _ = site.cogs[1]
    url = site.href(path, "attempt=worker")  # a URL no process has cached
    mosaic = open_mosaic(input_spec(InputConfig(paths=(url,))), chunk=1024)
    site.faults.status[f"/{path.parent.name}/{path.name}"] = [503, 503]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        data = client.submit(read, mosaic.plan(Window(0, 0, 256, 256))).result()
    assert site.faults.status[f"/{path.parent.name}/{path.name}"] == []  # both 503s were answered, then 200
    with rasterio.open(path) as src:
        assert np.array_equal(data, src.read(window=Window(0, 0, 256, 256)).astype(np.float32))


def test_a_missing_item_and_a_stalled_server_each_give_one_line(site, tmp_path):
    missing = site.items[0].clone()
    missing.id = "m_missing"
    missing.datetime = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)  # not the first item: found when reading
    missing.assets["image"].href = f"{site.url}/cogs/gone.tif?{SIGNED}"
    lost = _item_collection(site, "lost.json", [*site.items[:2], missing])
    stalled = site.items[3].clone()
    stalled.assets["image"].href = f"{site.url}/cogs/stalled.tif?{SIGNED}"
    site.faults.stall.add("/cogs/stalled.tif")
    hung = _item_collection(site, "hung.json", [stalled])
    quick = {"GDAL_HTTP_TIMEOUT": "2"}  # the environment overrides our defaults
    start = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        gone = pool.submit(_landcover_run, tmp_path / "gone", {"stac": {"source": lost}})
        retry_once = {"retries": 1, "retry_delay": 0.1}
        stall = pool.submit(_landcover_run, tmp_path / "stall", {"stac": {"source": hung}, "remote": retry_once}, quick)
        gone, stall = gone.result(), stall.result()
    assert time.monotonic() - start < 120
    line = _error_line(gone)
    # Found by the first look, which reads every tile's overview before any window.
    assert f"item m_missing ({site.url}/cogs/gone.tif): cannot read its overviews" in line and "404" in line
    assert "the object is not there" in line
    line = _error_line(stall)
    assert f"item {stalled.id} ({site.url}/cogs/stalled.tif): cannot open" in line and "timed out" in line
    assert "after 1 retry over" in line  # a timeout is retried, within input.remote's budget
    assert "raise GDAL_HTTP_TIMEOUT" in line
    for done, folder in ((gone, "gone"), (stall, "stall")):
        assert SECRET not in done.stderr
        assert not (tmp_path / folder / "out" / "labels.tif").exists()


@pytest.fixture(scope="module")
def stopped_remote(site, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A run of the COGs over HTTP (signed hrefs with credentials in the URL) stopped by Ctrl-C once
    a chunk is finished, as test_resume stops one: its folder and the stopped process."""
    folder = tmp_path_factory.mktemp("stopped") / "run"
    config_path = _paths_config(folder, _with_credentials(site, SIGNED))
    stopped = stop_once_labelling(config_path, folder / "out" / ".labels.tif.parts", signal.SIGINT, after=0)
    assert stopped.returncode == 130 and "run again with --resume" in stopped.stderr, stopped.stderr
    assert not (folder / "out" / "labels.tif").exists()
    return folder, stopped


def test_a_stopped_remote_run_and_its_resume_keep_the_secrets_out_of_every_file_and_log(site, stopped_remote, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(stopped_remote[0], folder)  # the module's copy stays as stopped, for the next test
    stopped = stopped_remote[1]
    parts = folder / "out" / ".labels.tif.parts"
    records = sorted(p.name for p in parts.glob("chunk-*.npz"))
    assert 1 <= len(records) < REMOTE_CHUNKS
    scanned, stopped_leaks = _scan(folder / "out", {"stderr of the stopped run": stopped.stderr, "stdout of the stopped run": stopped.stdout})
    parts_files = {f".labels.tif.parts/{name}" for name in ["fingerprint.json", *records]}
    assert parts_files <= scanned  # the parts folder was searched, records and fingerprint included

    site.traffic.reset()
    resumed = _landcover(folder, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"({len(records)} finished chunk(s))" in resumed.stderr
    assert any(SECRET in q for q in site.traffic.queries)  # the signed hrefs were used
    scanned, resumed_leaks = _scan(folder / "out", {"stderr of the resumed run": resumed.stderr, "stdout of the resumed run": resumed.stdout})
    assert {"labels.tif", "labels.model.json", "labels.report.json", "labels.report.html", "labels.stac-item.json"} <= scanned
    assert not parts.exists()
    assert {**stopped_leaks, **resumed_leaks} == {}


def test_a_stopped_remote_run_resumes_with_re_signed_hrefs_and_reuses_its_chunks(site, stopped_remote, tmp_path, watch_parts):
    folder = tmp_path / "run"
    shutil.copytree(stopped_remote[0], folder)
    _paths_config(folder, _with_credentials(site, RESIGNED))  # the same URLs, signed anew
    parts = folder / "out" / ".labels.tif.parts"
    finished = chunk_files(parts)
    assert 1 <= len(finished) < REMOTE_CHUNKS and all(len(names) == 2 for names in finished.values())  # record, tiles
    reference = _paths_config(tmp_path / "local", [str(p) for p, _ in site.cogs]).parent  # uninterrupted, local files

    site.traffic.reset()
    with watch_parts(parts, stat=lambda name: CHUNK_FILE.fullmatch(name) is not None) as seen, ThreadPoolExecutor(2) as pool:
        local = pool.submit(_landcover, reference)
        resumed = _landcover(folder, "--resume")
        local = local.result()
    assert local.returncode == 0, local.stderr
    assert resumed.returncode == 0, resumed.stderr
    assert f"({len(finished)} finished chunk(s))" in resumed.stderr
    assert set(site.traffic.queries) == {RESIGNED}  # read with the new signature only
    assert len(seen.records()) == REMOTE_CHUNKS and not parts.exists()
    for chunk, names in finished.items():  # reused: only ever seen as the stopped run left them
        assert {name: seen.history[name] for name in names} == {name: [stat] for name, stat in names.items()}, chunk
    assert (folder / "out" / "labels.tif").read_bytes() == (tmp_path / "local" / "out" / "labels.tif").read_bytes()
    _, leaks = _scan(folder / "out", {"stderr": resumed.stderr, "stdout": resumed.stdout})
    assert leaks == {}


# --- a STAC API ---------------------------------------------------------------------------------------


def test_api_search_pages_through_a_loopback_search_endpoint(tmp_path, naip_scenes):
    cogs = _cogs(naip_scenes, tmp_path / "cogs")
    seen: list[dict] = []

    def landing(path, query, body):
        return 200, {
            "type": "Catalog", "id": "api", "description": "loopback", "stac_version": "1.0.0",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [{"rel": "self", "href": f"{server.url}/"}, {"rel": "root", "href": f"{server.url}/"},
                      {"rel": "search", "href": f"{server.url}/search", "method": "POST", "type": "application/geo+json"}],
        }

    def search(path, query, body):
        seen.append(json.loads(body) if body else query)  # the first page is POSTed, the next GET
        page = int(query.get("page", ["0"])[0])
        chosen = items[page : page + 1]  # one item per page, whatever the limit asked
        links = [{"rel": "next", "href": f"{server.url}/search?page={page + 1}&collections=naip-test", "method": "GET"}] if page + 1 < len(items) else []
        return 200, {"type": "FeatureCollection", "features": [i.to_dict() for i in chosen], "links": links}

    with RangeServer(tmp_path, routes={"/": landing, "/search": search}) as server:
        items = [_item(path, when, server.href(path)) for path, when in cogs]
        found = find_items(StacQuery(source=f"{server.url}/", collections=("naip-test",), bbox=(-100.0, 40.0, -90.0, 50.0), datetime="2000-01-01/2030-12-31"))
    assert [i.id for i in found] == [i.id for i in items]
    assert len(seen) == len(items) == 4  # one page per item
    assert seen[0]["collections"] == ["naip-test"] and seen[0]["bbox"] == [-100.0, 40.0, -90.0, 50.0]
    assert seen[0]["datetime"].startswith("2000-01-01")


def test_static_catalog_filters_by_bbox_and_datetime_and_refuses_query(site):
    first = site.items[0]
    west, south, east, north = first.bbox
    inside = StacQuery(source=site.catalog, bbox=(west + 1e-4, south + 1e-4, west + 2e-4, south + 2e-4))
    assert first.id in [i.id for i in find_items(inside)]
    assert find_items(StacQuery(source=site.catalog, datetime="1990-01-01/1990-12-31")) == []
    with pytest.raises(InputError, match="input.stac.query: .* is a static catalog, not a STAC API"):
        find_items(StacQuery(source=site.catalog, query={"naip:state": {"eq": "nd"}}))
