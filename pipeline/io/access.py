"""How remote inputs are reached for hours: signed where opened, GDAL's settings, retries.

An ``Access`` travels with the mosaic plan to every task (plain, small, no secret): whether hrefs
are signed, the GDAL settings of ``input.remote`` (requester-pays, profile, region, endpoint) and
the retry budget. ``attempt`` opens or reads one remote file under it:

- a 403 on a signed href renews its token and tries again at once (an expired or revoked token);
  so does a remote header cut short ("not recognized as being in a supported file format": a
  request refused in the middle of the open), once;
- 429, 5xx, timeouts and reads that fail without a status (GDAL does not say the status of a
  range request that failed) back off with jitter, doubling from ``delay``, until ``retries`` or
  ``max_wait`` seconds of waiting are spent; a signed href is signed anew before each retry;
- anything else (404, a 403 that renewing does not cure, a local file) fails at once.

GDAL's own retries are off by default (``GDAL_HTTP_MAX_RETRY`` 0 in ``REMOTE_OPTIONS``) so that
every retry is counted here: ``counts()`` per process, summed over the workers by the run.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import rasterio
from rasterio.errors import RasterioError

from pipeline.io import signing
from pipeline.io.remote import Href, gdal_reason, http_status, where

log = logging.getLogger(__name__)

T = TypeVar("T")
_THROTTLED = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Retry:
    """The budget of one open or read of a remote file."""

    retries: int = 8
    delay: float = 1.0
    """Seconds before the first retry; it doubles with each, times a random factor in [0.5, 1)."""
    max_wait: float = 120.0
    """Seconds of waiting at most, over all the retries of one open or read."""


@dataclass(frozen=True)
class Access:
    """How a mosaic's remote files are reached (see the module docstring)."""

    sign: str = "none"
    """"planetary-computer": hrefs are signed where they are opened."""
    gdal: tuple[tuple[str, str], ...] = ()
    """GDAL settings of ``input.remote``, applied where files are opened and read."""
    retry: Retry = Retry()

    @property
    def signs(self) -> bool:
        return self.sign != "none"


# input.remote's keys and the GDAL settings they set (docs/remote.md).
GDAL_SETTINGS = {
    "request_payer": "AWS_REQUEST_PAYER",
    "no_sign_request": "AWS_NO_SIGN_REQUEST",
    "profile": "AWS_PROFILE",
    "region": "AWS_REGION",
    "endpoint": "AWS_S3_ENDPOINT",
    "https": "AWS_HTTPS",
    "virtual_hosting": "AWS_VIRTUAL_HOSTING",
    "azure_account": "AZURE_STORAGE_ACCOUNT",
    "azure_no_sign_request": "AZURE_NO_SIGN_REQUEST",
}
_RETRY_KEYS = {"retries": "retries", "retry_delay": "delay", "max_wait": "max_wait"}


def access_of(remote: Mapping[str, Any] | None, *, sign: str = "none") -> Access:
    """The access of an ``input.remote`` section (as the config or a record holds it)."""
    remote = remote or {}
    gdal = {name: _gdal_value(remote[key]) for key, name in GDAL_SETTINGS.items() if remote.get(key) is not None}
    gdal.update({str(k): _gdal_value(v) for k, v in (remote.get("gdal") or {}).items()})
    retry = Retry(**{field_: remote[key] for key, field_ in _RETRY_KEYS.items() if remote.get(key) is not None})
    return Access(sign=sign, gdal=tuple(sorted(gdal.items())), retry=retry)


def _gdal_value(value: Any) -> str:
    return ("YES" if value else "NO") if isinstance(value, bool) else str(value)


class Failure(Exception):
    """A remote open or read that failed for good: GDAL's reason, scrubbed, and what was tried."""

    def __init__(self, reason: str, status: int | None, tries: int, waited: float) -> None:
        super().__init__(reason, status, tries, waited)  # all of them, so that it pickles as any exception
        self.reason, self.status, self.tries, self.waited = reason, status, tries, waited

    def after(self) -> str:
        """" after 3 retries over 7.2 s" when there were retries."""
        return f" after {self.tries} retr{'y' if self.tries == 1 else 'ies'} over {self.waited:.1f} s" if self.tries else ""


_counts: Counter = Counter()
_counts_lock = threading.Lock()


def counts() -> dict[str, float]:
    """This process's retries so far: ``retries``, ``waited_s`` and ``renewed`` (tokens renewed after a refusal)."""
    with _counts_lock:
        return dict(_counts)


def _count(**added: float) -> None:
    with _counts_lock:
        _counts.update(added)


def gdal_name(href: Href, access: Access, *, renew: bool = False) -> str:
    """The name GDAL opens for ``href``: signed, where the access signs, with a token valid now."""
    if access.sign == "planetary-computer" and href.gdal.startswith("/vsicurl/"):
        return "/vsicurl/" + signing.signed(href.gdal[len("/vsicurl/") :], renew=renew)
    return href.gdal


def attempt(href: Href, access: Access, action: Callable[[str], T], *, item: str | None = None) -> T:
    """``action(name)`` with the GDAL name of ``href``, retried as the module docstring says;
    raises ``Failure`` when it fails for good (a local file: at the first failure)."""
    tries, waited, renew, renewed = 0, 0.0, False, False
    while True:
        name = gdal_name(href, access, renew=renew)
        try:
            if not (tries or renewed):
                return action(name)
            # GDAL remembers a failed open of a name for the life of the process: a retry of the
            # same name must not be answered from that memory.
            with rasterio.Env(CPL_VSIL_CURL_NON_CACHED=name):
                return action(name)
        except RasterioError as exc:
            reason = gdal_reason(exc)
            status = http_status(reason)
            signed = access.signs
            # A refusal, or a header cut short (a request refused mid-open reads as "not
            # recognized"): once, at once, with a renewed token where hrefs are signed.
            cut_short = status is None and "not recognized" in reason and href.remote
            if ((status in (401, 403) and signed) or cut_short) and not renewed:
                renew, renewed = signed, True
                _count(renewed=int(signed))
                log.info("%s: %s: opened again%s", where(href, item), reason, " with a renewed token" if signed else "")
                continue
            # No status: a timeout, or a range read that failed (GDAL does not say why).
            transient = status in _THROTTLED or (status is None and "not recognized" not in reason)
            budget = access.retry
            if not href.remote or not transient or tries >= budget.retries or waited >= budget.max_wait:
                raise Failure(reason, status, tries, waited) from None
            delay = min(budget.max_wait - waited, budget.delay * 2**tries * random.uniform(0.5, 1.0))
            tries, waited, renew = tries + 1, waited + delay, signed
            _count(retries=1, waited_s=delay)
            log.warning("%s: %s; retry %d of %d in %.1f s", where(href, item), reason, tries, budget.retries, delay)
            time.sleep(delay)
