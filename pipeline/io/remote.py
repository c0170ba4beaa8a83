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
_STATUS = re.compile(r"HTTP (?:response |error )?code:? ?(\d{3})")
_NAMED_BAND = re.compile(r"^.*?, band (\d+):")  # GDAL's "<file name>, band 1: IReadBlock failed ..."
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
    # 429/5xx are retried by pipeline.io.access (input.remote.retries), which counts them.
    "GDAL_HTTP_MAX_RETRY": "0",
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
    catalog re-signs the href, so it is the file's identity; ``gdal``, the name GDAL opens (as
    given: signed, with credentials; Planetary Computer's hrefs stay bare and are signed where
    opened, ``access.py``), is used only where a file is opened. Not a ``str`` on purpose: a path
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


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]


def gdal_reason(exc: BaseException) -> str:
    """GDAL's cause of a failure, on one line, with no secret: rasterio's own message often only
    says "see previous exception", and GDAL starts a block's failure with the file's name, which
    is the signed one ("m_1.tif?sig=..., band 1: IReadBlock failed ...")."""
    return scrub(_NAMED_BAND.sub(r"band \1:", first_line(exc.__cause__ or exc), count=1))


def http_status(reason: str) -> int | None:
    """The HTTP status in GDAL's message, if it says one (/vsis3/ says S3's "Access Denied" for 403)."""
    match = _STATUS.search(reason)
    if match:
        return int(match.group(1))
    return 403 if "Access Denied" in reason or "AccessDenied" in reason else None


def remote_fix(reason: str, href: Href, *, signed: bool = False) -> str:
    """What to do about a request that failed for good, from GDAL's message and the href's kind."""
    status = http_status(reason)
    if status == 404 or "does not exist" in reason:
        return "the object is not there: check the URL, or leave the item out with input.exclude"
    if status in (401, 403):
        if href.gdal.startswith("/vsis3/"):
            return (
                "access denied: a requester-pays bucket (AWS naip-analytic) needs input.remote.request_payer: requester; "
                "otherwise check the credentials (input.remote.profile, or AWS_ACCESS_KEY_ID in the environment of every worker)"
            )
        if signed:
            return "access denied even with a renewed token: check PC_SDK_SUBSCRIPTION_KEY and that the collection is still public"
        return "access denied: a signed URL may have expired (input.stac.sign: planetary-computer signs as it reads)"
    if "timed out" in reason.lower() or "timeout" in reason.lower():
        return "the server did not answer in time: check the network, or raise GDAL_HTTP_TIMEOUT (seconds) or input.remote.max_wait"
    if status is not None and status >= 500 or status == 429:
        return "the server kept refusing: try again later (--resume), or raise input.remote.max_wait"
    return "the file may be truncated or damaged: check it, or leave the item out with input.exclude"
