"""A loopback HTTP server that answers Range requests, counts what it sends and injects faults.

Python's ``http.server`` ignores ``Range``, so GDAL's ``/vsicurl/`` would read whole files from it;
this one answers single ranges with 206 (and multi-range requests range by range in a
multipart/byteranges body), as object stores do. The query string is ignored when finding the
file, so hrefs signed with ``?sig=...`` are served like their bare path (``Faults.authorize`` can
refuse them, as a store refuses an expired token). It also answers as a proxy (``GDAL_HTTP_PROXY``)
for any host, serving ``http://host/path`` from ``root/host/path``: hrefs on Azure Blob Storage's
host names are read from loopback, as signed. Used by the tests and by ``scripts/benchmark.py
--state-http``.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

_RANGE = re.compile(r"(\d*)-(\d*)")


@dataclass
class Faults:
    """What the server does wrong, by URL path (without the query)."""

    status: dict[str, list[int]] = field(default_factory=dict)
    """Statuses answered, one per request, before the file is served (e.g. [503, 503])."""
    stall: set[str] = field(default_factory=set)
    """Paths whose requests are never answered (until the server stops)."""
    authorize: Callable[[str, dict[str, list[str]]], int | None] | None = None
    """(path, query) → a status refusing the request (e.g. 403 for an expired token), or None."""


@dataclass
class Traffic:
    """Requests and body bytes sent, by URL path."""

    requests: Counter = field(default_factory=Counter)
    bytes: Counter = field(default_factory=Counter)
    queries: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, query: str, sent: int) -> None:
        with self.lock:
            self.requests[path] += 1
            self.bytes[path] += sent
            self.queries.append(query)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.bytes.clear()
            self.queries.clear()


Route = Callable[[str, dict[str, list[str]], bytes], tuple[int, dict]]
"""(path, query, body) → (status, JSON document): dynamic answers such as a STAC API's /search."""


class RangeServer:
    """``with RangeServer(root) as server:`` serves ``root`` at ``server.url`` (127.0.0.1, a free port)."""

    def __init__(self, root: Path, *, routes: dict[str, Route] | None = None) -> None:
        self.root = Path(root).resolve()
        self.routes = routes or {}
        self.faults = Faults()
        self.traffic = Traffic()
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def href(self, path: Path, query: str = "") -> str:
        relative = Path(path).resolve().relative_to(self.root).as_posix()
        return f"{self.url}/{relative}" + (f"?{query}" if query else "")


def _handler(server: RangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as GDAL expects of object stores

        def log_message(self, *args) -> None:  # quiet: the tests read the counters instead
            pass

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def do_GET(self) -> None:
            self._answer(head=False)

        def do_POST(self) -> None:
            self._answer(head=False)

        def _answer(self, *, head: bool) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            if parts.netloc:  # a proxy's request (GDAL_HTTP_PROXY): the host is the first folder
                path = f"/{parts.netloc}{path}"
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if path in server.faults.stall:
                server.stopping.wait()
                return
            refused = server.faults.authorize and server.faults.authorize(path, parse_qs(parts.query))
            if refused:
                self._send(refused, b"refused", "text/plain", head, path, parts.query)
                return
            queued = server.faults.status.get(path)
            if queued:
                self._send(queued.pop(0), b"", "text/plain", head, path, parts.query)
                return
            if path in server.routes:
                status, doc = server.routes[path](path, parse_qs(parts.query), body)
                self._send(status, json.dumps(doc).encode(), "application/json", head, path, parts.query)
                return
            file = (server.root / path.lstrip("/")).resolve()
            if not file.is_relative_to(server.root) or not file.is_file():
                self._send(404, b"not found", "text/plain", head, path, parts.query)
                return
            size = file.stat().st_size
            kind = "application/json" if file.suffix == ".json" else "image/tiff"
            ranges = self._ranges(size)
            with file.open("rb") as f:  # only the bytes asked for: a NAIP-sized COG is 400 MB

                def part(start: int, end: int) -> bytes:
                    f.seek(start)
                    return f.read(end - start + 1)

                if ranges is None:
                    self._send(200, f.read(), kind, head, path, parts.query)
                elif len(ranges) == 1:
                    start, end = ranges[0]
                    extra = {"Content-Range": f"bytes {start}-{end}/{size}"}
                    self._send(206, part(start, end), kind, head, path, parts.query, extra)
                else:
                    boundary = "RANGESEPARATOR"
                    chunks = [
                        f"--{boundary}\r\nContent-Type: {kind}\r\nContent-Range: bytes {s}-{e}/{size}\r\n\r\n".encode()
                        + part(s, e) + b"\r\n"
                        for s, e in ranges
                    ]
                    payload = b"".join(chunks) + f"--{boundary}--\r\n".encode()
                    self._send(206, payload, f"multipart/byteranges; boundary={boundary}", head, path, parts.query)

        def _ranges(self, size: int) -> list[tuple[int, int]] | None:
            header = self.headers.get("Range", "")
            if not header.startswith("bytes="):
                return None
            out = []
            for spec in header[len("bytes=") :].split(","):
                match = _RANGE.fullmatch(spec.strip())
                if not match:
                    return None
                first, last = match.groups()
                if first == "":  # the last N bytes
                    start, end = max(0, size - int(last)), size - 1
                else:
                    start, end = int(first), min(size - 1, int(last) if last else size - 1)
                out.append((start, end))
            return out

        def _send(self, status: int, payload: bytes, kind: str, head: bool, path: str, query: str, extra: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Accept-Ranges", "bytes")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            if status >= 400:  # curl may drop an error's body unread: never reuse the connection
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            sent = 0 if head else len(payload)
            if sent:
                self.wfile.write(payload)
            server.traffic.add(path, query, sent)

    return Handler
