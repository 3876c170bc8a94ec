"""Headless Chromium driven over the DevTools protocol, with nothing but the standard library.

`--remote-debugging-pipe` makes Chromium read protocol commands from its file descriptor 3
and write replies and events to its descriptor 4, as JSON messages ended by a NUL byte (the
transport Playwright and Puppeteer use too): no port, no websocket library. `open_page`
loads a page, waits for its load event, and returns what a reader's browser would show:
the console errors, the images that did not load, and a screenshot.

Run as a script, it checks one page the same way and saves its screenshot (exit status 1 on
a console error or a broken image, each named on stderr):

    .venv/bin/python tests/chromium.py runs/demo/report.html /tmp/report.png
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from base64 import b64decode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the names Debian's package and other distributions give the browser
EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")

#: every image once the page has loaded, with what is wrong with it (null: nothing). An <img>
#: shows a truncated PNG partly and reports its full naturalWidth, so each is also made into
#: an ImageBitmap, which needs the whole picture to decode.
IMAGES_JS = """
Promise.all([...document.images].map(async img => {
  await img.decode().catch(() => null);
  let problem = null;
  if (!img.complete || img.naturalWidth === 0) {
    problem = 'did not load';
  } else {
    try { await createImageBitmap(img); } catch (error) { problem = String(error); }
  }
  return {alt: img.alt, src: img.src.slice(0, 60), problem};
}))
"""


def find_chromium() -> str | None:
    """The path of an installed Chromium (None: none is)."""
    return next((path for name in EXECUTABLES if (path := shutil.which(name))), None)


@dataclass
class Page:
    """What a browser showed of one page."""

    #: console.error and console.assert calls, uncaught exceptions, and the browser's own
    #: error log (a resource that failed to load, a blocked script)
    errors: list[str] = field(default_factory=list)
    #: every <img>: its alt text, the start of its src and what is wrong with it (None:
    #: nothing, it decoded whole)
    images: list[dict[str, Any]] = field(default_factory=list)
    screenshot: bytes = b""

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        return [image for image in self.images if image["problem"] is not None]


class DevToolsError(RuntimeError):
    """The browser answered a command with an error, went silent or exited."""


class Chromium:
    """One headless browser; `with Chromium(path) as browser: browser.open_page(file)`."""

    def __init__(self, executable: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="assay-chromium-")
        # Both pipes are made before the browser starts, so descriptors 3 and 4 are taken in
        # this process and the child's own error pipe (subprocess's) cannot land on them.
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        def wire() -> None:  # in the child, before exec
            # First above 4, so that placing one end cannot overwrite the other.
            read_end = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(replies_write, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        args = [
            executable,
            "--headless",
            "--remote-debugging-pipe",
            f"--user-data-dir={self._profile.name}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-gpu",
            "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
            "--hide-scrollbars",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self._process = subprocess.Popen(
            args,
            pass_fds=(3, 4),
            preexec_fn=wire,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, ended whole in close()
        )
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the protocol ----------------------------------------------------------------------

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Run one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise DevToolsError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_for(self, method: str, session: str, since: int = 0) -> None:
        """Wait until the event `method` arrives from `session`, counting the events kept
        from the `since`-th on."""
        seen = since
        while True:
            for event in self._events[seen:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return
            seen = len(self._events)
            self._events.append(self._receive())

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise DevToolsError(f"Chromium sent nothing for {self.timeout:.0f} s")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise DevToolsError(f"Chromium exited (status {self._process.wait()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    # -- pages -----------------------------------------------------------------------------

    def open_page(self, path: Path, width: int = 1200, height: int = 900) -> Page:
        """Load `path` in a fresh tab of width x height CSS pixels; its errors, its images
        and a screenshot of the top of the page."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session)
        self.send("Emulation.setDeviceMetricsOverride", session, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        start = len(self._events)
        self.send("Page.navigate", session, url=path.resolve().as_uri())
        self.wait_for("Page.loadEventFired", session, since=start)
        images = self.send("Runtime.evaluate", session, expression=IMAGES_JS,
                           awaitPromise=True, returnByValue=True)["result"]["value"]
        shot = self.send("Page.captureScreenshot", session, format="png")["data"]
        errors = [text for event in self._events[start:]
                  if event.get("sessionId") == session and (text := _error_text(event))]
        self.send("Target.closeTarget", targetId=target)
        return Page(errors=errors, images=images, screenshot=b64decode(shot))

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self.send("Browser.close")
            except (DevToolsError, OSError):
                pass
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        for fd in (self._commands, self._replies):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()


def _error_text(event: dict[str, Any]) -> str | None:
    """The event as one line when it reports an error on the page (None: it does not)."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        words = [str(arg.get("value", arg.get("description", ""))) for arg in params["args"]]
        return f"console.{params['type']}: {' '.join(words)}"
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return f"uncaught: {details.get('exception', {}).get('description', details['text'])}"
    if method == "Log.entryAdded" and params["entry"]["level"] == "error":
        entry = params["entry"]
        return f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip()
    return None


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: chromium.py PAGE.html SCREENSHOT.png")
    executable = find_chromium()
    if executable is None:
        sys.exit("chromium not installed: run scripts/setup-system.sh")
    with Chromium(executable) as browser:
        page = browser.open_page(Path(sys.argv[1]))
    Path(sys.argv[2]).write_bytes(page.screenshot)
    for problem in page.errors + [f"broken image: {i}" for i in page.broken_images]:
        print(problem, file=sys.stderr)
    sys.exit(1 if page.errors or page.broken_images else 0)
