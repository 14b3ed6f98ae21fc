"""Drive a headless Chromium through the DevTools protocol over a pipe, with the standard library only.

Chromium started with ``--remote-debugging-pipe`` reads protocol commands from file descriptor 3 and writes
replies and events to descriptor 4, each message a JSON object ended by a NUL byte (Chromium's
``devtools_pipe_handler``). That needs no websocket library and no free TCP port. The browser tests' own
driver (they read console errors, requested URLs and the drawn SVG, which kaleido does not expose); the
product draws static pictures with kaleido (:mod:`pipesim.figures.static`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["BrowserError", "Chromium", "Tab", "find_chromium", "HEADLESS_FLAGS", "CHROMIUM_ENV"]

CHROMIUM_ENV = "PIPESIM_CHROMIUM"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

# Headless with nothing that reaches the network on its own (the machine may have none).
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


class BrowserError(RuntimeError):
    """Chromium could not be found, started or driven."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable: ``$PIPESIM_CHROMIUM`` if set, else the first of
    chromium, chromium-browser, google-chrome, google-chrome-stable, chrome on PATH; None if there is none."""
    env = os.environ.get(CHROMIUM_ENV)
    if env:
        return env if Path(env).is_file() and os.access(env, os.X_OK) else shutil.which(env)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _high_fd(fd: int) -> int:
    """A duplicate of ``fd`` numbered 10 or more (the original is closed)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Chromium:
    """One headless Chromium process spoken to over the DevTools pipe. Use as a context manager."""

    def __init__(self, executable: str | None = None, timeout_s: float = 30.0) -> None:
        exe = executable or find_chromium()
        if exe is None:
            raise BrowserError(
                f"no Chromium found (looked for {', '.join(CANDIDATES)} on PATH; set {CHROMIUM_ENV})"
            )
        self.timeout_s = timeout_s
        self._profile = tempfile.mkdtemp(prefix="pipesim-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # The child's ends move to descriptors >= 10 first, so redirecting them onto 3 and 4 cannot clobber.
        to_child_r, from_child_w = _high_fd(to_child_r), _high_fd(from_child_w)
        flags = [
            *HEADLESS_FLAGS,
            f"--user-data-dir={self._profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        # bash (dash takes single-digit descriptors only) moves our pipe ends onto the descriptors 3 and 4
        # that Chromium expects, then execs it.
        self._proc = subprocess.Popen(
            [
                shutil.which("bash") or "bash",
                "-c",
                f'exec "$0" "$@" 3<&{to_child_r} 4>&{from_child_w}',
                exe,
                *flags,
            ],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        try:
            self.send("Browser.getVersion")
        except BrowserError:
            self.close()
            raise

    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            *messages, buf = buf.split(b"\0")
            with self._cond:
                for raw in messages:
                    msg = json.loads(raw)
                    if "id" in msg:
                        self._replies[int(msg["id"])] = msg
                    else:
                        self.events.append(msg)
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Send one command and wait for its result; a protocol error raises :class:`BrowserError`."""
        with self._cond:
            self._next_id += 1
            msg_id = self._next_id
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        except OSError as exc:
            raise BrowserError(f"Chromium is not running ({exc})") from None
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            while msg_id not in self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise BrowserError(f"no reply from Chromium to {method} within {self.timeout_s:g} s")
                self._cond.wait(left)
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message', reply['error'])}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def wait_event(
        self,
        method: str,
        session: str | None = None,
        since: int = 0,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Wait for the first event ``method`` (of ``session``) at index >= ``since`` of :attr:`events`."""
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            while True:
                for ev in self.events[since:]:
                    if (
                        ev.get("method") == method
                        and (session is None or ev.get("sessionId") == session)
                        and (predicate is None or predicate(ev))
                    ):
                        return ev
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise BrowserError(f"Chromium sent no {method} within {self.timeout_s:g} s")
                self._cond.wait(left)

    def new_tab(self, width: int = 1400, height: int = 900) -> Tab:
        """Open a blank page of ``width`` x ``height`` CSS pixels with Runtime, Log, Page and Network events on."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        return Tab(self, session, target)

    def close(self) -> None:
        """Ask Chromium to quit, kill it if it does not, and remove its profile directory."""
        if self._proc.poll() is None:
            try:
                os.write(self._to_child, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Tab:
    """One page of a :class:`Chromium`, attached in flat session mode."""

    def __init__(self, browser: Chromium, session: str, target_id: str) -> None:
        self.browser = browser
        self.session = session
        self.target_id = target_id

    def close(self) -> None:
        """Close this page."""
        self.browser.send("Target.closeTarget", {"targetId": self.target_id})

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a command to this page."""
        return self.browser.send(method, params, session=self.session)

    def go_offline(self) -> None:
        """Make every network request of this page fail, as on a machine with no network."""
        self.send(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )

    def navigate(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        since = len(self.browser.events)
        reply = self.send("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise BrowserError(f"cannot load {url}: {reply['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session, since)

    def evaluate(self, expression: str) -> Any:
        """Evaluate a JavaScript expression in the page (awaiting a promise) and return its JSON value."""
        reply = self.send(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error: {text}")
        return reply.get("result", {}).get("value")

    def screenshot(self, full_page: bool = True) -> bytes:
        """PNG bytes of the page (the whole document when ``full_page``, else the viewport)."""
        params: dict[str, Any] = {"format": "png", "optimizeForSpeed": True}
        if full_page:
            size = self.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
            )
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
            params["captureBeyondViewport"] = True
        return base64.b64decode(self.send("Page.captureScreenshot", params)["data"])

    def _events(self, method: str) -> list[dict[str, Any]]:
        return [
            e for e in self.browser.events if e.get("method") == method and e.get("sessionId") == self.session
        ]

    def console_errors(self) -> list[str]:
        """Uncaught exceptions, ``console.error`` calls and error log entries of this page so far."""
        out = []
        for e in self._events("Runtime.exceptionThrown"):
            d = e["params"]["exceptionDetails"]
            out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        for e in self._events("Runtime.consoleAPICalled"):
            if e["params"]["type"] in ("error", "assert"):
                args = e["params"].get("args", [])
                out.append(
                    "console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in args)
                )
        for e in self._events("Log.entryAdded"):
            entry = e["params"]["entry"]
            if entry.get("level") == "error":
                out.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        return out

    def requested_urls(self) -> list[str]:
        """URLs this page asked the network stack for (file: and data: included)."""
        return [e["params"]["request"]["url"] for e in self._events("Network.requestWillBeSent")]
