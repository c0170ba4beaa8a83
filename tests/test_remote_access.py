"""Hours-long reads against the real kinds of catalogs, on loopback: tokens that expire, a
requester-pays bucket, throttling, and a tile that fails for good.

- Planetary Computer: the COGs live under an Azure Blob Storage host name
  (``http://naiptest.blob.core.windows.net/naip/...``) that GDAL reaches through the loopback
  server as a proxy (``GDAL_HTTP_PROXY``); the same server is the SAS token endpoint
  (``PC_SDK_SAS_URL``), minting tokens that expire after ``LIFE`` seconds and refusing stale or
  revoked ones with 403. The ``planetary-computer`` package fetches the tokens, as in production.
- AWS: ``tests/s3_server.py``, moto's S3 on loopback, enforcing requester-pays.
Every run is ``landcover run`` in a subprocess, compared with the same run over local files.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pystac
import pytest
import yaml
from http_server import RangeServer
from rasters import read_labels
from s3_server import S3Server
from test_cli import LANDCOVER
from test_remote import _cogs, _error_line, _item

HOST = "naiptest.blob.core.windows.net"
LIFE = 0.5  # seconds a token lasts: a run of a few seconds outlives several
TOKENS = "/api/sas/v1/token/naiptest/naip"
SECRET_SIG = "sig="  # a signed href's query: never in a line or a file


class Tokens:
    """The token endpoint's state: tokens minted (sig → expiry), revocation, refusals."""

    def __init__(self) -> None:
        self.minted: dict[str, float] = {}
        self.revoked_before = 0.0
        self.revoke_at: int | None = None
        """Revoke every token minted so far at this request to the blob host (a rotated key)."""
        self.requests = 0
        self.refused = 0
        self.lock = threading.Lock()

    def mint(self, path, query, body) -> tuple[int, dict]:
        sig = secrets.token_urlsafe(12)
        with self.lock:
            self.minted[sig] = time.time() + LIFE
        expiry = dt.datetime.fromtimestamp(self.minted[sig], dt.UTC)
        token = f"st=2026-01-01&se={expiry:%Y-%m-%dT%H:%M:%SZ}&sp=rl&sv=2024-05-04&sr=c&sig={sig}"
        return 200, {"msft:expiry": expiry.isoformat().replace("+00:00", "Z"), "token": token}

    def refuses(self, path: str, query: dict[str, list[str]]) -> int | None:
        if not path.startswith(f"/{HOST}/"):
            return None
        sig = (query.get("sig") or [""])[0]
        with self.lock:
            self.requests += 1
            if self.requests == self.revoke_at:
                self.revoked_before = time.time()
            expiry = self.minted.get(sig)
            stale = expiry is None or time.time() > expiry or expiry - LIFE < self.revoked_before
            self.refused += stale
        return 403 if stale else None


@pytest.fixture(scope="module")
def blob(tmp_path_factory, naip_scenes):
    """The COGs on the blob host, their items (unsigned hrefs, as Planetary Computer's STAC gives
    them), the token endpoint, and the local run's labels to compare with."""
    root = tmp_path_factory.mktemp("blob")
    (root / HOST).mkdir()
    cogs = _cogs(naip_scenes, root / HOST / "naip")
    tokens = Tokens()
    with RangeServer(root, routes={TOKENS: tokens.mint}) as server:
        items = [_item(path, when, f"http://{HOST}/naip/{path.name}") for path, when in cogs]
        (root / "items.json").write_text(json.dumps(pystac.ItemCollection(items).to_dict()))
        server.tokens, server.cogs, server.items_file = tokens, cogs, root / "items.json"
        order = [str(p) for p, _ in sorted(cogs, key=lambda c: c[1])]  # the search's drawing order
        local = _run(root / "local", {"paths": order})
        assert local.returncode == 0, local.stderr
        server.local = read_labels(root / "local" / "out" / "labels.tif")
        yield server


def _run(folder: Path, input_section: dict, *, dask: dict | None = None, env: dict | None = None, args=()) -> subprocess.CompletedProcess:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "input": input_section,
        "sample": {"size": 2000},
        "model": {"k": 4, "n_init": 1},
        "output": {"path": "out/labels.tif"},
        "dask": {"chunk": 512, "workers": 1, **(dask or {})},
    }
    (folder / "run.yaml").write_text(yaml.safe_dump(doc))
    return subprocess.run(
        [str(LANDCOVER), "run", "run.yaml", *args], capture_output=True, text=True, cwd=folder, timeout=300,
        env={**os.environ, **(env or {})},
    )


def _proxied(server) -> dict[str, str]:
    return {"GDAL_HTTP_PROXY": server.url.removeprefix("http://"), "PC_SDK_SAS_URL": f"{server.url}/api/sas/v1/token"}


@pytest.fixture
def signing(blob):
    """The blob host refuses what its token endpoint did not mint, or minted too long ago."""
    blob.faults.authorize = blob.tokens.refuses
    yield blob.tokens
    blob.faults.authorize = None


@pytest.mark.parametrize("scheduler", ["threads", "local-cluster"])
def test_tokens_that_expire_and_are_revoked_are_renewed_where_files_are_read(blob, signing, tmp_path, scheduler):
    tokens = signing
    minted_before, refused_before = len(tokens.minted), tokens.refused
    tokens.requests, tokens.revoke_at = 0, 20  # mid-run: the sample has read, the labels not yet
    started = time.monotonic()
    stac = {"source": str(blob.items_file), "sign": "planetary-computer"}
    cluster = {"workers": 2, "threads_per_worker": 1} if scheduler == "local-cluster" else {"workers": 2}
    done = _run(tmp_path, {"stac": stac}, dask={"scheduler": scheduler, **cluster}, env=_proxied(blob))
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert np.array_equal(read_labels(tmp_path / "out" / "labels.tif"), blob.local)
    assert wall > 2 * LIFE  # the run outlived its first tokens ...
    assert len(tokens.minted) - minted_before >= 3  # ... which were renewed, on every process that read
    assert tokens.refused > refused_before  # the revoked ones were refused, and the run read on
    assert "remote reads:" in done.stderr
    out_files = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert SECRET_SIG not in done.stderr and SECRET_SIG.encode() not in out_files
    record = json.loads((tmp_path / "out" / "labels.model.json").read_text())["input"]["stac"]
    assert record["sign"] == "planetary-computer" and SECRET_SIG not in json.dumps(record)


def test_a_stale_token_is_refused_and_renewed_in_the_same_read(blob, signing, tmp_path):
    """In-process: an open dataset whose token was revoked reads on with a renewed one."""
    from rasterio.windows import Window

    from pipeline.config import InputConfig, StacConfig
    from pipeline.io import access
    from pipeline.io.mosaic import open_mosaic, read
    from pipeline.stages.edge import input_spec

    env = _proxied(blob)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        from planetary_computer.settings import Settings

        Settings.get.cache_clear()
        spec = input_spec(InputConfig(stac=StacConfig(source=str(blob.items_file), sign="planetary-computer")))
        mosaic = open_mosaic(spec, chunk=256)
        first = read(mosaic.plan(Window(0, 0, 256, 256)))
        signing.revoked_before = time.time()  # every token so far, even unexpired ones
        time.sleep(0.01)
        before = access.counts()
        again = read(mosaic.plan(Window(0, 300, 256, 256)))
        after = access.counts()
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
        Settings.get.cache_clear()
    assert np.isfinite(first).any() and np.isfinite(again).any()
    assert after.get("renewed", 0) + after.get("retries", 0) > before.get("renewed", 0) + before.get("retries", 0)


def test_throttled_reads_back_off_and_the_log_counts_the_retries(blob, tmp_path):
    url_path = f"/{HOST}/naip/{blob.cogs[1][0].name}"
    blob.faults.status[url_path] = [429, 503, 429]
    done = _run(tmp_path, {"paths": [f"{blob.url}{url_path}"], "remote": {"retry_delay": 0.1}})
    assert done.returncode == 0, done.stderr
    assert blob.faults.status[url_path] == []
    retries = [line for line in done.stderr.splitlines() if "HTTP response code: 429; retry" in line or "HTTP response code: 503; retry" in line]
    assert retries, done.stderr
    assert f"remote reads: {len(retries)} retr{'y' if len(retries) == 1 else 'ies'}" in done.stderr


def _items_file(blob, folder: Path, extra: list[pystac.Item] | None = None) -> Path:
    """The items with hrefs straight at the loopback server (no proxy), signed with a secret."""
    items = []
    for path, when in blob.cogs:
        items.append(_item(path, when, f"{blob.url}/{HOST}/naip/{path.name}?sv=1&{SECRET_SIG}SECRET"))
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "items.json"
    file.write_text(json.dumps(pystac.ItemCollection(items + (extra or [])).to_dict()))
    return file


def test_a_tile_gone_mid_run_stops_with_its_item_id_and_resumes_fixed_or_excluded(blob, tmp_path):
    items = _items_file(blob, tmp_path)
    gone_item = blob.cogs[3][0].stem  # the last in row-major order: chunks before it finish
    gone_path = f"/{HOST}/naip/{gone_item}.tif"
    budget = {"retries": 1, "retry_delay": 0.05}
    reference_all = _run(tmp_path / "all", {"stac": {"source": str(items)}, "remote": budget})
    reference_without = _run(tmp_path / "without", {"stac": {"source": str(items)}, "exclude": [gone_item], "remote": budget})
    assert reference_all.returncode == 0 and reference_without.returncode == 0, reference_all.stderr + reference_without.stderr

    run = tmp_path / "run"
    parts = run / "out" / ".labels.tif.parts"

    def watch() -> None:  # the item goes away once a chunk is finished
        deadline = time.monotonic() + 120
        while not list(parts.glob("chunk-*.npz")) and time.monotonic() < deadline:
            time.sleep(0.002)
        blob.faults.authorize = lambda path, query: 404 if path == gone_path else None

    watcher = threading.Thread(target=watch)
    watcher.start()
    # Without GDAL's caches what the sample read is read again, and a chunk takes long enough
    # for the item to go while the others are being labelled.
    no_cache = {"GDAL_CACHEMAX": "0", "CPL_VSIL_CURL_CACHE_SIZE": "1"}
    try:
        failed = _run(run, {"stac": {"source": str(items)}, "remote": budget}, env=no_cache)
    finally:
        watcher.join()
    line = _error_line(failed)
    assert line.startswith(f"error: item {gone_item} (") and "cannot read window" in line, line
    assert "input.exclude" in line and "SECRET" not in failed.stderr
    finished = list(parts.glob("chunk-*.npz"))
    assert finished and not (run / "out" / "labels.tif").exists(), failed.stderr

    excluded = tmp_path / "excluded"
    shutil.copytree(run, excluded)
    blob.faults.authorize = None  # the item is back
    fixed = _run(run, {"stac": {"source": str(items)}, "remote": budget}, args=("--resume",))
    assert fixed.returncode == 0, fixed.stderr
    assert f"({len(finished)} finished chunk(s))" in fixed.stderr
    assert (run / "out" / "labels.tif").read_bytes() == (tmp_path / "all" / "out" / "labels.tif").read_bytes()

    left_out = _run(excluded, {"stac": {"source": str(items)}, "exclude": [gone_item], "remote": budget}, args=("--resume",))
    assert left_out.returncode == 0, left_out.stderr
    assert "input.exclude changed" in left_out.stderr
    assert (excluded / "out" / "labels.tif").read_bytes() == (tmp_path / "without" / "out" / "labels.tif").read_bytes()
    model = json.loads((excluded / "out" / "labels.model.json").read_text())
    assert model["input"]["items"] == len(blob.cogs) - 1


@pytest.mark.parametrize("scheduler", ["threads", "local-cluster"])  # a worker's error reaches the CLI as one line
def test_a_truncated_cog_stops_the_run_with_one_line_naming_its_item(blob, tmp_path, scheduler):
    path, when = blob.cogs[2]
    truncated = path.with_name("m_truncated.tif")
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    try:
        item = _item(path, when + dt.timedelta(days=30), f"{blob.url}/{HOST}/naip/{truncated.name}?sv=1&{SECRET_SIG}SECRET")
        item.id = "m_truncated"
        items = _items_file(blob, tmp_path, [item])
        retry_once = {"retries": 1, "retry_delay": 0.05}
        done = _run(tmp_path, {"stac": {"source": str(items)}, "remote": retry_once}, dask={"scheduler": scheduler})
    finally:
        truncated.unlink()
    line = _error_line(done)
    assert line.startswith("error: item m_truncated (") and "cannot read window" in line and "truncated" in line, line
    assert "SECRET" not in done.stderr and not (tmp_path / "out" / "labels.tif").exists()


@pytest.fixture(scope="module")
def bucket(blob):
    with S3Server() as s3:
        s3.create_bucket("naip-analytic-test", requester_pays=True)
        for path, _ in blob.cogs:
            s3.put("naip-analytic-test", f"nd/{path.name}", path)
        yield s3


def _s3_run(bucket, blob, folder: Path, remote: dict, **kwargs) -> subprocess.CompletedProcess:
    order = [p for p, _ in sorted(blob.cogs, key=lambda c: c[1])]
    paths = [f"s3://naip-analytic-test/nd/{p.name}" for p in order]
    where = {"endpoint": bucket.endpoint, "https": False, "virtual_hosting": False, "region": "us-east-1"}
    return _run(folder, {"paths": paths, "remote": {**where, **remote}}, env=bucket.credentials, **kwargs)


def test_a_requester_pays_bucket_is_read_on_every_worker_with_input_remote(bucket, blob, tmp_path):
    bucket.reset()
    done = _s3_run(bucket, blob, tmp_path, {"request_payer": "requester"}, dask={"scheduler": "local-cluster", "workers": 1})
    assert done.returncode == 0, done.stderr
    assert np.array_equal(read_labels(tmp_path / "out" / "labels.tif"), blob.local)
    assert bucket.requests and all(paid for _, _, paid in bucket.requests)  # every request carried the header
    assert bucket.credentials["AWS_SECRET_ACCESS_KEY"] not in done.stderr


def test_a_requester_pays_bucket_without_the_setting_says_which_setting_fixes_it(bucket, blob, tmp_path):
    done = _s3_run(bucket, blob, tmp_path, {})
    line = _error_line(done)
    assert "s3://naip-analytic-test/nd/" in line and "input.remote.request_payer: requester" in line, line
    assert bucket.credentials["AWS_SECRET_ACCESS_KEY"] not in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "input_section, expected",
    [
        ({"exclude": ["m_nowhere"]}, "input.exclude: 'm_nowhere' names no input of this run"),
        ({"remote": {"gdal": {"AWS_SECRET_ACCESS_KEY": "SECRET-VALUE"}}}, "AWS_SECRET_ACCESS_KEY holds a secret"),
        ({"remote": {"retries": -1}}, "input.remote.retries"),
    ],
)
def test_bad_remote_settings_give_one_line_and_write_nothing(blob, tmp_path, input_section, expected):
    done = _run(tmp_path, {"stac": {"source": str(blob.items_file)}, **input_section})
    line = _error_line(done)
    assert expected in line, line
    assert "SECRET-VALUE" not in done.stderr  # a refused secret is not repeated
    assert not (tmp_path / "out").exists()


def test_exclude_names_files_as_paths_do_relative_to_the_yaml_and_ids_as_written(tmp_path, naip_scenes):
    from pipeline.config import load_config

    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(naip_scenes[0], tmp_path / "a.tif")
    doc = {"input": {"paths": ["../a.tif", str(naip_scenes[1])], "exclude": ["../a.tif", "m_4609601_ne_14_060_20200827"]}}
    (folder / "run.yaml").write_text(yaml.safe_dump(doc))
    config = load_config(folder / "run.yaml")
    assert config.input.exclude == (str(tmp_path / "a.tif"), "m_4609601_ne_14_060_20200827")
    assert config.input.paths[0] == config.input.exclude[0]
