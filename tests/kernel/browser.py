"""Headless Chromium (Debian's ``chromium`` package) driven over the DevTools protocol.

``--remote-debugging-pipe`` speaks the protocol over file descriptors 3 (commands in) and 4
(answers and events out), one JSON message per NUL-terminated record: no port, no
websocket library. The browser runs inside a network namespace (``ip netns exec`` keeps
the descriptors), so it reaches the stack's address there.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Any

COMMAND_TIMEOUT = 20.0


def chromium() -> str | None:
    """The browser's executable, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserError(RuntimeError):
    """The browser answered a command with an error, or not in time."""


class Browser:
    """One headless Chromium in namespace ``ns``; :meth:`open` gives a page session."""

    def __init__(self, ns: str, executable: str) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="ustcp-chromium-")
        to_child, self._out = os.pipe()
        self._in, from_child = os.pipe()

        def fds() -> None:  # the child's fds 3 and 4, whatever numbers the pipes got
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, executable, "--headless", "--no-sandbox",
             "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-extensions", "--disable-background-networking",
             "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}",
             "--window-size=1280,1000", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, pass_fds=(3, 4), start_new_session=True)
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._serial = 0

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the browser and remove its profile. Chromium's helper processes (renderer,
        utility, crash handler) outlive a killed main process for a moment and keep writing
        to the profile ("Directory not empty" from the cleanup, seen in CI): ask the browser
        to close, then kill its whole process group (its own session), then remove the
        profile once nothing writes to it any more."""
        if self.proc.poll() is None:
            with contextlib.suppress(BrowserError, OSError):
                self.send("Browser.close", timeout=5.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        for fd in (self._in, self._out):
            os.close(fd)
        deadline = time.monotonic() + 10.0
        while True:
            try:
                self._profile.cleanup()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise BrowserError("no answer from the browser in time")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise BrowserError(f"the browser exited ({self.proc.poll()})")
            self._buffer += chunk
        record, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(record)
        return message

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        """One command; its result (events that arrive meanwhile are dropped)."""
        self._serial += 1
        command: dict[str, Any] = {"id": self._serial, "method": method, "params": params or {}}
        if session is not None:
            command["sessionId"] = session
        os.write(self._out, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._message(deadline)
            if message.get("id") == self._serial:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def open(self, url: str) -> Page:
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        return Page(self, session["sessionId"])


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.browser.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True}, self.session)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float) -> Any:
        """Poll ``expression`` until it is truthy; its value. BrowserError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise BrowserError(f"{expression} still false after {timeout:g} s")
            time.sleep(0.1)
        return value

    def screenshot(self) -> bytes:
        data = self.browser.send("Page.captureScreenshot", {"format": "png"}, self.session)
        return base64.b64decode(data["data"])
