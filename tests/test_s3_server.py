"""The loopback S3 endpoint (tests/s3_server.py) read by real GDAL through /vsis3/.

GDAL caches what it learns of /vsis3/ URLs (sizes, listings) for the whole process, and a listing
made with the payer header tells it a file exists, which changes how a later refused open fails.
So every case reads its own bucket, listed by no other case.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from botocore.exceptions import ClientError
from rasterio._err import CPLE_AWSAccessDeniedError
from rasterio.errors import RasterioIOError
from rasterio.transform import from_origin
from s3_server import S3Server

PAYER = {"AWS_REQUEST_PAYER": "requester"}


@pytest.fixture(scope="module")
def cog(tmp_path_factory) -> tuple:
    """A 512x512 4-band uint8 COG of 256-pixel tiles (four tiles, so reads are range requests)."""
    path = tmp_path_factory.mktemp("cog") / "scene.tif"
    pixels = np.random.default_rng(0).integers(0, 256, (4, 512, 512), dtype=np.uint8)
    profile = {"width": 512, "height": 512, "count": 4, "dtype": "uint8", "crs": "EPSG:26911", "transform": from_origin(500000, 4000000, 1, 1)}
    with rasterio.open(path, "w", driver="COG", BLOCKSIZE=256, **profile) as dst:
        dst.write(pixels)
    return path, pixels


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


def stored(s3: S3Server, bucket: str, path, *, requester_pays: bool = False, public: bool = False) -> str:
    s3.create_bucket(bucket, requester_pays=requester_pays)
    s3.put(bucket, "scene.tif", path, public=public)
    return f"/vsis3/{bucket}/scene.tif"


def test_requester_pays_bucket_reads_with_the_payer_header(s3, cog):
    name = stored(s3, "paid-bucket", cog[0], requester_pays=True)
    with rasterio.Env(**s3.gdal_env(**PAYER)), rasterio.open(name) as src:
        assert (src.read() == cog[1]).all()
    seen = [r for r in s3.requests if r[1].startswith("/paid-bucket/")]
    # The listing, the GET of the header's first bytes and the range GET of the tiles: all paid.
    assert [m for m, _, _ in seen].count("GET") >= 3 and all(paid for _, _, paid in seen)
    assert s3.paid["/paid-bucket/scene.tif"] == s3.hits["/paid-bucket/scene.tif"] >= 2
    assert not s3.refused["/paid-bucket/scene.tif"]


def test_requester_pays_bucket_refuses_an_open_without_the_header(s3, cog):
    name = stored(s3, "unpaid-bucket", cog[0], requester_pays=True)
    with rasterio.Env(**s3.gdal_env()), pytest.raises(RasterioIOError) as info:
        rasterio.open(name)
    # GDAL reports the S3 error's Message; the 403 itself is only in a logged warning.
    assert str(info.value) == "Access Denied"
    assert isinstance(info.value.__context__, CPLE_AWSAccessDeniedError)
    assert s3.refused["/unpaid-bucket/scene.tif"] >= 1 and not s3.paid["/unpaid-bucket/scene.tif"]


def test_a_read_refused_after_the_open_fails_without_a_status(s3, cog):
    name = stored(s3, "late-bucket", cog[0])
    with rasterio.Env(**s3.gdal_env()), rasterio.open(name) as src:
        s3.requester_pays.add("late-bucket")  # the range GETs of the tiles are now refused
        with pytest.raises(RasterioIOError) as info:
            src.read(1, window=((0, 256), (0, 256)))
    assert str(info.value) == "Read failed. See previous exception for details."
    assert "IReadBlock failed at X offset 0, Y offset 0" in str(info.value.__cause__)
    assert s3.refused["/late-bucket/scene.tif"] >= 1


def test_the_payer_header_is_kept_from_the_open(s3, cog):
    """A dataset opened with AWS_REQUEST_PAYER sends it on its later reads, under any Env."""
    name = stored(s3, "kept-bucket", cog[0], requester_pays=True)
    with rasterio.Env(**s3.gdal_env(**PAYER)):
        src = rasterio.open(name)
    with src, rasterio.Env(**s3.gdal_env()):
        assert (src.read() == cog[1]).all()
    assert not s3.refused["/kept-bucket/scene.tif"]


def test_normal_bucket_reads_without_the_header(s3, cog):
    name = stored(s3, "plain-bucket", cog[0])
    with rasterio.Env(**s3.gdal_env()), rasterio.open(name) as src:
        assert (src.read() == cog[1]).all()
    assert s3.hits["/plain-bucket/scene.tif"] >= 2 and not s3.paid["/plain-bucket/scene.tif"]


def test_unsigned_requests_read_public_objects(s3, cog):
    name = stored(s3, "public-bucket", cog[0], public=True)
    with rasterio.Env(**s3.gdal_env(AWS_NO_SIGN_REQUEST="YES")), rasterio.open(name) as src:
        assert (src.read() == cog[1]).all()


def test_servers_run_side_by_side_and_free_their_buckets(tmp_path):
    data = b"hello"
    with S3Server() as one, S3Server() as two:
        assert one.endpoint != two.endpoint
        one.create_bucket("side-one")
        two.create_bucket("side-two")
        one.put("side-one", "k", data)
        assert two.client.get_object(Bucket="side-one", Key="k")["Body"].read() == data  # one namespace
    with S3Server() as again:  # the names are free once their servers are gone
        again.create_bucket("side-one", requester_pays=True)
        again.put("side-one", "k", data)
        assert again.client.get_object(Bucket="side-one", Key="k", RequestPayer="requester")["Body"].read() == data
        with pytest.raises(ClientError, match="AccessDenied"):  # AWS's error, as boto3 parses it
            again.client.get_object(Bucket="side-one", Key="k")
