"""A loopback S3 endpoint (moto's S3 app on 127.0.0.1) that enforces requester-pays as AWS does.

GDAL's ``/vsis3/`` needs a real HTTP endpoint, so moto's in-process mocks are no use to it; this
serves moto's S3 WSGI app from a thread. moto (5.2.5) stores no requester-pays setting and
enforces none, so a small middleware does: a request to a requester-pays bucket, or to an object
in it, without ``x-amz-request-payer: requester`` gets AWS's 403 AccessDenied, as a reader who is
not the bucket's owner gets from AWS (every caller here counts as such a reader). Only path-style
addressing (``/bucket/key``) is handled: read with ``AWS_VIRTUAL_HOSTING=FALSE`` (``gdal_env`` sets
it). Used by tests/test_remote_access.py.

moto keeps its buckets in one process-wide namespace, so servers running at the same time must use
distinct bucket names (a clash fails loudly with BucketAlreadyExists); each server removes its
buckets on exit, so later servers may reuse the names.
"""

from __future__ import annotations

import tempfile
import threading
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import boto3
from botocore.config import Config
from moto.server import MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

READER_KEY, READER_SECRET = "testing", "testing-secret"  # what gdal_env reads with
OWNER_KEY = "owner"  # the server's own boto3 setup calls: signed with it, so left out of the counters

ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
    b"<RequestId>0000000000000000</RequestId><HostId>loopback</HostId></Error>"
)


class _QuietHandler(MotoRequestHandler):
    def log_request(self, *args) -> None:  # one line per request drowns the test output
        pass


class S3Server:
    """``with S3Server() as s3:`` serves S3 at ``s3.endpoint``; read it with ``rasterio.Env(**s3.gdal_env())``."""

    def __init__(self) -> None:
        self.requester_pays: set[str] = set()
        self.requests: list[tuple[str, str, bool]] = []
        """(method, path, had the payer header) for every request but the server's own setup calls."""
        self.hits: Counter = Counter()  # requests by path ("/bucket/key")
        self.paid: Counter = Counter()  # of those, the ones carrying x-amz-request-payer: requester
        self.refused: Counter = Counter()  # of those, the ones answered 403 for lacking it
        self._lock = threading.Lock()
        self._buckets: list[str] = []
        # rasterio.Env refuses AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY ("handled exclusively by boto3"),
        # so gdal_env hands GDAL the reader's keys in a credentials file of its own.
        self._dir = tempfile.TemporaryDirectory(prefix="s3server-")
        self._credentials = Path(self._dir.name, "credentials")
        self._credentials.write_text(f"[default]\naws_access_key_id = {READER_KEY}\naws_secret_access_key = {READER_SECRET}\n")
        Path(self._dir.name, "config").write_text("")  # so that ~/.aws/config (a region, a profile) plays no part
        self._app = create_backend_app("s3")  # the S3 app alone: no dispatching on Host or signature
        self._httpd = make_server("127.0.0.1", 0, self._middleware, threaded=True, request_handler=_QuietHandler)
        self.endpoint = f"127.0.0.1:{self._httpd.server_address[1]}"
        # Polled for shutdown every 50 ms, not werkzeug's 500: a server per test stops at once.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.client = boto3.client(
            "s3", endpoint_url=f"http://{self.endpoint}", region_name="us-east-1",
            aws_access_key_id=OWNER_KEY, aws_secret_access_key="owner-secret",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def _middleware(self, environ, start_response):
        path = unquote(environ.get("PATH_INFO", "/"))
        bucket = path.lstrip("/").split("/", 1)[0]
        paid = environ.get("HTTP_X_AMZ_REQUEST_PAYER", "").lower() == "requester"
        refuse = bucket in self.requester_pays and not paid
        if f"Credential={OWNER_KEY}/" not in environ.get("HTTP_AUTHORIZATION", ""):
            with self._lock:
                self.requests.append((environ["REQUEST_METHOD"], path, paid))
                self.hits[path] += 1
                self.paid[path] += paid
                self.refused[path] += refuse
        if refuse:
            body = b"" if environ["REQUEST_METHOD"] == "HEAD" else ACCESS_DENIED  # AWS sends no body to HEAD
            start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(ACCESS_DENIED)))])
            return [body]
        return self._app(environ, start_response)

    def create_bucket(self, name: str, requester_pays: bool = False) -> None:
        self.client.create_bucket(Bucket=name)
        self._buckets.append(name)
        if requester_pays:
            self.requester_pays.add(name)

    def put(self, bucket: str, key: str, data: str | Path | bytes, *, public: bool = False) -> None:
        """Upload a file (or bytes); ``public``: readable unsigned (AWS_NO_SIGN_REQUEST), which moto
        refuses for private objects as AWS does."""
        body = data if isinstance(data, bytes) else Path(data).read_bytes()
        acl = {"ACL": "public-read"} if public else {}
        self.client.put_object(Bucket=bucket, Key=key, Body=body, RequestPayer="requester", **acl)

    def gdal_env(self, **extra) -> dict[str, str]:
        """GDAL settings that point ``/vsis3/`` here, for ``rasterio.Env(**s3.gdal_env())``; add
        AWS_REQUEST_PAYER="requester" to pay. AWS_ACCESS_KEY_ID in the process environment, if set,
        takes precedence over the credentials file (GDAL's order); moto accepts any keys."""
        return {
            "AWS_S3_ENDPOINT": self.endpoint, "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_REGION": "us-east-1", "AWS_PROFILE": "default",
            "CPL_AWS_CREDENTIALS_FILE": str(self._credentials), "AWS_CONFIG_FILE": str(Path(self._dir.name, "config")),
            **extra,
        }

    @property
    def credentials(self) -> dict[str, str]:
        """The reader's keys as environment variables (``monkeypatch.setenv``), for code such as
        the pipeline's workers that takes credentials from the environment, not from gdal_env."""
        return {"AWS_ACCESS_KEY_ID": READER_KEY, "AWS_SECRET_ACCESS_KEY": READER_SECRET}

    def reset(self) -> None:
        """Forget the requests seen so far."""
        with self._lock:
            self.requests.clear()
            self.hits.clear()
            self.paid.clear()
            self.refused.clear()

    def __enter__(self) -> S3Server:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        try:  # empty and remove our buckets: moto's namespace outlives this server
            self.requester_pays.clear()
            for bucket in self._buckets:
                for obj in self.client.list_objects_v2(Bucket=bucket).get("Contents", []):
                    self.client.delete_object(Bucket=bucket, Key=obj["Key"])
                self.client.delete_bucket(Bucket=bucket)
        finally:
            self._httpd.shutdown()
            self._thread.join()
            self._httpd.server_close()
            self._dir.cleanup()
