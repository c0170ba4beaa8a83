"""The ``input.remote`` section: how object stores are reached, on every worker, and retried."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from pipeline.config.fields import Section, setting

# Names of GDAL settings that carry a secret: the config is recorded in the report and the page.
_SECRET = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|USERPWD|_KEY|KEY_ID|SAS|SESSION|CREDENTIAL|AUTHORIZATION|HEADER|CONNECTION_STRING", re.IGNORECASE)


class RemoteConfig(Section):
    """GDAL's settings for object stores, passed to every worker where files are opened, and the
    retries of throttled or failed requests. Secrets stay in the environment of the workers (or
    a profile): the config is recorded in the report."""

    request_payer: Literal["requester"] | None = setting(None, hint='use "requester" (AWS naip-analytic), or null')
    """AWS_REQUEST_PAYER: "requester" for requester-pays buckets such as AWS ``naip-analytic``."""
    no_sign_request: bool | None = setting(None, hint="use true for public buckets read without credentials, or null")
    """AWS_NO_SIGN_REQUEST: read public buckets without credentials."""
    profile: str | None = setting(None, hint="use the name of a profile in ~/.aws/credentials, or null")
    """AWS_PROFILE: the credentials' profile (the workers need the same file)."""
    region: str | None = setting(None, hint='use an AWS region, e.g. "us-west-2", or null')
    """AWS_REGION (``naip-analytic`` lives in us-west-2)."""
    endpoint: str | None = setting(None, hint='use "host:port" of an S3-compatible store, e.g. "minio.local:9000", or null')
    """AWS_S3_ENDPOINT: an S3-compatible store (MinIO, Ceph) instead of AWS."""
    https: bool | None = setting(None, hint="use false for an endpoint served over plain HTTP, or null")
    """AWS_HTTPS: false for an endpoint without TLS."""
    virtual_hosting: bool | None = setting(None, hint="use false for path-style addressing (most S3-compatible stores), or null")
    """AWS_VIRTUAL_HOSTING: false for path-style requests (bucket in the path)."""
    azure_account: str | None = setting(None, hint="use the storage account name, or null")
    """AZURE_STORAGE_ACCOUNT, for az:// paths."""
    azure_no_sign_request: bool | None = setting(None, hint="use true for public Azure containers, or null")
    """AZURE_NO_SIGN_REQUEST: read public Azure containers without credentials."""
    gdal: dict[str, str | int | float | bool] = setting({}, hint="give a mapping of GDAL setting names to values, e.g. {GDAL_HTTP_TIMEOUT: 60}")
    """Other GDAL settings, e.g. ``GDAL_HTTP_PROXY``; settings that hold a secret are refused."""
    retries: int = setting(8, ge=0, le=100, hint="use a whole number of retries, e.g. 8 (0: none)")
    """Retries of one open or read answered 429 or 5xx, timed out, or failed without a status."""
    retry_delay: float = setting(1.0, gt=0, le=600, hint="use seconds, e.g. 1.0")
    """Seconds before the first retry; each retry doubles it, with jitter (x 0.5 to 1)."""
    max_wait: float = setting(120.0, ge=0, le=86400, hint="use seconds, e.g. 120")
    """Seconds waited at most over all the retries of one open or read: then the run stops, and
    ``--resume`` finishes it."""

    @field_validator("gdal")
    @classmethod
    def _no_secret(cls, value: dict[str, object]) -> dict[str, object]:
        for name in value:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                raise ValueError(f"{name!r} is not a GDAL setting name (upper case, e.g. GDAL_HTTP_TIMEOUT)")
            if _SECRET.search(name):
                raise ValueError(
                    f"{name} holds a secret, and the config is recorded in the report; set it in the environment "
                    "of the run and of every worker (or use input.remote.profile)"
                )
        return value
