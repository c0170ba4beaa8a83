"""Inputs that live elsewhere: URLs as GDAL names, the GDAL settings for COGs over HTTP, redaction.

``https://``, ``s3://``, ``az://`` and ``gs://`` become GDAL's ``/vsicurl/``, ``/vsis3/``,
``/vsiaz/`` and ``/vsigs/``; ``/vsi...`` names pass as they are. Signed hrefs carry their secret
in the query (``?sig=``, SAS tokens, ``X-Amz-Signature``) and sometimes credentials before the
host: ``redact`` drops both. An input's address travels as an ``Href``, whose text is the
redacted form: the signed one is read only where GDAL opens the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

_SCHEMES = {"https://": "/vsicurl/", "http://": "/vsicurl/", "s3://": "/vsis3/", "az://": "/vsiaz/", "gs://": "/vsigs/"}
_REMOTE_VSI = ("/vsicurl", "/vsis3", "/vsiaz", "/vsiadls", "/vsigs", "/vsioss", "/vsiswift", "/vsiwebhdfs", "/vsihdfs")
_USERINFO = re.compile(r"(://)[^/@?#]*@")
# A URL or GDAL remote name inside free text (GDAL's messages quote the name they failed on).
_IN_TEXT = re.compile(r"(?:[a-z][a-z0-9+.-]*://|/vsi[a-z0-9_]+[/?])[^\s'\"<>]*", re.IGNORECASE)

# GDAL settings for COGs read over HTTP or from object stores, applied where files are opened and
# read (every header thread and every read task, so on every worker). Measured against a loopback
# Range server (docs/remote.md); an environment variable of the same name wins, so
# workers can be tuned without code.
REMOTE_OPTIONS = {
    # Without it GDAL lists the "folder" (and where that fails probes six sidecar names, .aux.xml,
    # .msk, ...) on every open: 3 to 8 requests against 2 for a COG, whose mask and overviews are
    # internal.
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    # 503/429/502/504 are retried with back-off from 1 s (GDAL's default: no retry).
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
    # libcurl waits forever by default: a stalled server would hang the run.
    "GDAL_HTTP_CONNECTTIMEOUT": "15",
    "GDAL_HTTP_TIMEOUT": "120",
    # GDAL's cache of fetched byte ranges (one per process, shared by every open file; 16 MB by
    # default). A block straddling a chunk border is needed by two or four tasks: with 16 MB it
    # was fetched again each time (the run moved 2.96x the files' bytes, 14.0 requests per
    # tile); with 256 MB 1.48x (the sample's half plus the label pass's whole) and 7.7. GDAL
    # reads it when a process first uses /vsicurl/, which is inside these settings.
    "CPL_VSIL_CURL_CACHE_SIZE": str(256 * 2**20),
}


@dataclass(frozen=True)
class Href:
    """An input file's address. Its text (``str``, ``repr``, messages, records, fingerprints) is
    redacted: no query, no credentials, the scheme the user wrote. It stays the same when a
    catalog re-signs the href, so it is the file's identity; ``gdal``, the name GDAL opens (signed,
    with credentials), is used only where a file is opened. Not a ``str`` on purpose: a path
    written into JSON or a message without ``str()`` fails instead of leaking."""

    gdal: str = field(repr=False)

    @classmethod
    def of(cls, entry: str) -> Href:
        """The href of an input entry as given (a URL, a /vsi name or a local path)."""
        return cls(gdal_path(entry))

    def __str__(self) -> str:
        return redact(self.gdal)

    def __repr__(self) -> str:
        return f"Href({str(self)!r})"

    @property
    def remote(self) -> bool:
        return is_remote(self.gdal)


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL or a GDAL network name (also nested, e.g. /vsizip//vsicurl/...)."""
    return path.startswith(tuple(_SCHEMES)) or any(prefix in path for prefix in _REMOTE_VSI)


def gdal_path(entry: str) -> str:
    """The name GDAL opens for an input entry: URLs mapped to their /vsi... handler, others as given."""
    for scheme, prefix in _SCHEMES.items():
        if entry.startswith(scheme):
            return prefix + (entry if prefix == "/vsicurl/" else entry[len(scheme) :])
    return entry


def redact(href: str) -> str:
    """``href`` as the user wrote it (https://, s3://, ...), without its query, fragment or
    credentials: signatures and tokens live there. This is the form every record and message uses.

    Local paths are returned as they are: a ``?`` in a file name is not a query.
    """
    if not is_remote(href) and "://" not in href:
        return href
    if href.startswith("/vsicurl?"):  # GDAL's option syntax: /vsicurl?opt=..&url=<the URL>
        return redact(parse_qs(href[len("/vsicurl?") :]).get("url", [""])[0])
    bare = _USERINFO.sub(r"\1", re.split(r"[?#]", href, maxsplit=1)[0])
    for scheme, prefix in _SCHEMES.items():
        if prefix == "/vsicurl/" and bare.startswith(prefix + scheme):
            return bare[len(prefix) :]
        if prefix != "/vsicurl/" and bare.startswith(prefix):
            return scheme + bare[len(prefix) :]
    return bare


def scrub(text: str) -> str:
    """Free text (e.g. a GDAL message) with every URL in it redacted."""
    return _IN_TEXT.sub(lambda m: redact(m.group()), text)


def where(path: Href | str, item: str | None = None) -> str:
    """How messages name an input: its redacted href, after its STAC item id when it has one."""
    name = str(path) if isinstance(path, Href) else redact(path)
    return f"item {item} ({name})" if item else name


def read_options(paths: Iterable[str]) -> dict[str, str]:
    """The GDAL settings for opening and reading ``paths``: REMOTE_OPTIONS when any is remote,
    except those the environment sets (read at call time, never at import)."""
    if not any(is_remote(p) for p in paths):
        return {}
    return {key: value for key, value in REMOTE_OPTIONS.items() if key not in os.environ}


def remote_fix(reason: str) -> str:
    """What to do about a failed request, from GDAL's message."""
    code = re.search(r"HTTP (?:response )?code:? ?(\d{3})", reason)
    status = int(code.group(1)) if code else None
    if status == 404 or "does not exist" in reason:
        return "the object is not there: check the URL, or re-run the STAC search if the catalog moved it"
    if status in (401, 403):
        return (
            "access denied: signed URLs expire (re-run; input.stac.sign: planetary-computer signs them), "
            "s3:// needs AWS credentials and AWS_REQUEST_PAYER=requester for requester-pays buckets"
        )
    if "timed out" in reason.lower() or "timeout" in reason.lower():
        return "the server did not answer in time: check the network, or raise GDAL_HTTP_TIMEOUT (seconds)"
    if status is not None and status >= 500:
        return "the server kept failing after GDAL_HTTP_MAX_RETRY retries: try again later"
    return "check the URL and the network"
