"""Files from a directory over HTTP/1.1 (``--app 8000=static:DIR``), on h11 with keep-alive.

``GET`` and ``HEAD`` of a file under DIR (a directory serves its ``index.html``); one byte
range per request (RFC 9110 §14.2: ``bytes=A-B``, ``bytes=A-``, ``bytes=-N``) answers 206
with ``Content-Range``, a range past the end 416; a Range header this server does not
handle (several ranges, another unit) is ignored and the whole file sent, as §14.2 allows.

No path leaves DIR: the percent-decoded path may not contain ``..`` segments or NUL, and the
resolved file (symbolic links followed) must lie inside DIR's resolved path; anything else
is 404, so the answer does not say what exists outside.
"""

from __future__ import annotations

import mimetypes
import os
import re
from pathlib import Path
from urllib.parse import unquote

import h11
import trio

from ustcp.apps.common import Handler, ends_quietly
from ustcp.apps.http import SEND_CHUNK, _Exchange
from ustcp.apps.webapp import serve_http

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def resolve(root: Path, target: bytes) -> Path | None:
    """The file under ``root`` (already resolved) that a request target names, or None."""
    path = unquote(target.decode("ascii", "replace").partition("?")[0])
    if "\0" in path or not path.startswith("/"):
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    candidate = root.joinpath(*parts).resolve()
    if not candidate.is_relative_to(root):
        return None
    if candidate.is_dir():
        candidate = candidate / "index.html"
    return candidate if candidate.is_file() else None


def byte_range(header: bytes | None, size: int) -> tuple[int, int] | bool | None:
    """A Range header against a file of ``size`` bytes: ``(first, last)`` inclusive, None
    to send the whole file, False when unsatisfiable (416)."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.decode("ascii", "replace").strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first_text, last_text = match.groups()
    if first_text == "":  # a suffix: the last N bytes
        suffix = int(last_text)
        if suffix == 0:
            return False
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = size - 1 if last_text == "" else min(int(last_text), size - 1)
    if first >= size or first > last:
        return False
    return first, last


async def _send_file(ex: _Exchange, path: Path, request: h11.Request) -> None:
    size = path.stat().st_size
    headers = dict(request.headers)
    wanted = byte_range(headers.get(b"range"), size)
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if wanted is False:
        await ex.error(416, "Range Not Satisfiable", [("Content-Range", f"bytes */{size}")])
        return
    first, last = wanted if isinstance(wanted, tuple) else (0, size - 1)
    length = last - first + 1
    extra = [("Accept-Ranges", "bytes")]
    if isinstance(wanted, tuple):
        extra.append(("Content-Range", f"bytes {first}-{last}/{size}"))
    await ex.send(h11.Response(status_code=206 if isinstance(wanted, tuple) else 200, headers=[
        ("Content-Type", ctype), ("Content-Length", str(length)), *extra]))
    if request.method != b"HEAD":
        async with await trio.open_file(path, "rb") as f:
            await f.seek(first)
            while length > 0:
                chunk = await f.read(min(length, SEND_CHUNK))
                if not chunk:  # the file shrank under us: the response cannot be completed
                    raise OSError(f"{path} shrank while being sent")
                await ex.send(h11.Data(data=chunk))
                length -= len(chunk)
    await ex.send(h11.EndOfMessage())


def serve_directory(directory: str | os.PathLike[str]) -> Handler:
    """A handler serving the files under ``directory``."""
    root = Path(directory).resolve()

    async def respond(ex: _Exchange, request: h11.Request) -> None:
        path = await trio.to_thread.run_sync(resolve, root, request.target)
        if path is None:
            await ex.error(404, "Not Found")
        else:
            await _send_file(ex, path, request)

    @ends_quietly("static")
    async def handle(stream: trio.abc.HalfCloseableStream) -> None:
        await serve_http(stream, respond)

    return handle
