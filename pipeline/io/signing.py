"""Planetary Computer's signed hrefs, signed where a file is opened, with tokens that last the run.

Its SAS tokens expire (about an hour), so hrefs are never signed when the mosaic is planned: the
plan holds bare hrefs and each process signs one where it opens the file, with one token per
storage account and container, fetched through the ``planetary-computer`` package
(``planetary_computer.sas.get_token``: its token endpoint, ``PC_SDK_SAS_URL`` and
``PC_SDK_SUBSCRIPTION_KEY`` or its settings file, its retries). This module keeps its own
view of each token on top of the package's cache, for two things the package does not do:
a token is renewed a quarter of its life before it expires, however short that life is (the
package renews at one minute left), and a token the storage refused (HTTP 403 before its
expiry: a revoked key, a skewed clock) is dropped and fetched again.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from urllib.parse import urlparse

from pipeline.errors import ReadError
from pipeline.io.remote import redact, scrub

BLOB_HOST = ".blob.core.windows.net"
RENEW_AT = dt.timedelta(minutes=1)  # at most this long before the expiry (a quarter of a short life)

_PACKAGE = "input.stac.sign: planetary-computer needs its package: pip install 'landcover-pipeline[planetary-computer]'"


@dataclass(frozen=True)
class _Token:
    token: str
    expiry: dt.datetime
    renew: dt.datetime
    """When it is renewed: before its expiry by a quarter of its life, at most RENEW_AT."""


_tokens: dict[tuple[str, str], _Token] = {}
_lock = threading.Lock()  # one fetch per container at a time: the other threads wait for it


def signed(url: str, *, renew: bool = False) -> str:
    """``url`` (an https URL of Azure Blob Storage) with a valid SAS token; others as they are
    (the package signs blob URLs only). ``renew``: the storage refused the last token."""
    parsed = urlparse(url)
    if not parsed.netloc.endswith(BLOB_HOST) or parsed.query:
        return url
    account, container = parsed.netloc.split(".")[0], parsed.path.lstrip("/").split("/", 1)[0]
    return f"{url}?{_token(account, container, renew=renew)}"


def check_package() -> None:
    """Fail at the start, on the client, rather than in the first task."""
    try:
        import planetary_computer  # noqa: F401
    except ImportError:
        raise ReadError(_PACKAGE) from None


def _token(account: str, container: str, *, renew: bool) -> str:
    now = dt.datetime.now(dt.UTC)
    with _lock:
        held = _tokens.get((account, container))
        if held is not None and not renew and now < held.renew:
            return held.token
        fresh = _fetch(account, container, drop=held is not None)
        life = fresh.expiry - now
        _tokens[(account, container)] = _Token(fresh.token, fresh.expiry, fresh.expiry - min(RENEW_AT, life / 4))
        return fresh.token


def _fetch(account: str, container: str, *, drop: bool):
    try:
        import requests
        from planetary_computer import sas
        from planetary_computer.settings import Settings
    except ImportError:
        raise ReadError(_PACKAGE) from None
    endpoint = f"{Settings.get().sas_url}/{account}/{container}"
    if drop:  # the package would hand back the token it holds until a minute before its expiry
        sas.TOKEN_CACHE.pop(endpoint, None)
    try:
        return sas.get_token(account, container)
    except (requests.RequestException, ValueError) as exc:  # no network, 401 for a wrong key, 429 after its retries; a bad answer
        raise ReadError(
            f"input.stac.sign: cannot get a token for {account}/{container} from {redact(endpoint)} "
            f"({scrub(str(exc))[:200]}); check the network, or PC_SDK_SUBSCRIPTION_KEY"
        ) from None
