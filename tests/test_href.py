"""One Href: its text is redacted everywhere; the signed form is only what GDAL opens."""

from __future__ import annotations

import json
import os

import pytest
import rasterio
from rasterio.env import get_gdal_config

from pipeline.algo.balance import recorded_path
from pipeline.io.access import Access
from pipeline.io.remote import Href
from pipeline.io.sources import CACHE_BYTES, gdal_options
from pipeline.products.parts import fingerprint

SIGNED = "https://user:pw@example.com/naip/m_4209301_ne_15_060_20210915.tif?st=2026&sig=SECRET%3D"


def test_an_href_shows_its_redacted_form_and_opens_its_signed_one():
    href = Href.of(SIGNED)
    assert str(href) == "https://example.com/naip/m_4209301_ne_15_060_20210915.tif"
    assert "SECRET" not in repr(href) and "pw" not in repr(href) and "SECRET" not in f"{href}"
    assert href.gdal == "/vsicurl/" + SIGNED and href.remote
    with pytest.raises(TypeError):  # written to JSON without str(): an error, not a leak
        json.dumps({"path": href})
    s3 = Href.of("s3://naip-analytic/ia/2021/60cm/rgbir_cog/42093/m_4209301_ne_15_060_20210915.tif")
    assert s3.gdal.startswith("/vsis3/naip-analytic/") and str(s3).startswith("s3://naip-analytic/")


def test_a_local_name_is_kept_whole_and_is_not_remote(tmp_path):
    odd = tmp_path / "field?north.tif"
    href = Href.of(str(odd))
    assert str(href) == href.gdal == str(odd) and not href.remote
    assert recorded_path(href) == str(odd)  # a "?" in a file name is not a query


def test_the_balance_record_and_the_fingerprint_hold_no_secret_and_survive_resigning(tmp_path):
    assert recorded_path(Href.of(SIGNED)) == "https://example.com/naip/m_4209301_ne_15_060_20210915.tif"
    local = tmp_path / "a.tif"
    local.write_bytes(b"tiff")
    grid = {"crs": "EPSG:26915", "transform": [0.6, 0, 0, 0, -0.6, 0], "height": 1, "width": 1, "chunk": 512}
    first = fingerprint({}, grid=grid, inputs=[Href.of(SIGNED), Href.of(str(local))])
    resigned = fingerprint({}, grid=grid, inputs=[Href.of(SIGNED.replace("SECRET", "OTHER")), Href.of(str(local))])
    assert first == resigned
    text = json.dumps(first)
    assert "SECRET" not in text and "sig=" not in text and "user:pw" not in text
    assert first["input_files"][1] == [str(local), 4, os.stat(local).st_mtime_ns]


def test_the_block_cache_is_set_in_bytes_where_files_are_read(monkeypatch):
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    options = gdal_options(["/data/a.tif"], Access())
    assert options["GDAL_CACHEMAX"] == CACHE_BYTES == 64 * 2**20
    with rasterio.Env(**options):
        assert get_gdal_config("GDAL_CACHEMAX") == CACHE_BYTES  # rasterio: bytes (64 would be 64 bytes)
    monkeypatch.setenv("GDAL_CACHEMAX", "1024")
    assert "GDAL_CACHEMAX" not in gdal_options(["/data/a.tif"], Access())  # the environment wins
