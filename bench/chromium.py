"""Drive headless Chromium from the standard library: load a page, collect
its JavaScript errors, evaluate expressions, take screenshots.

Chromium speaks the DevTools protocol over two pipes
(``--remote-debugging-pipe``: it reads commands from fd 3 and writes replies
and events to fd 4, each message JSON ending in a NUL byte), so no driver
package and no port are needed. Used by ``tests/test_dashboard.py``,
``tests/test_docs.py`` and ``bench/screenshots.py``.

    with Chromium() as browser:
        browser.goto("http://127.0.0.1:8000/")
        browser.wait_for("document.querySelectorAll('canvas').length > 0")
        browser.screenshot("page.png")
        assert not browser.errors
"""
import base64
import fcntl
import http.server
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial

INSTALL = "apt-get update && apt-get install -y chromium"
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium():
    """The Chromium executable: ``$FASTNN_CHROMIUM``, else the first of
    NAMES on PATH, else None."""
    exe = os.environ.get("FASTNN_CHROMIUM")
    if exe:
        return shutil.which(exe) or exe
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _above(fd, lowest):
    """``fd`` moved to a descriptor number of at least ``lowest``."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    os.close(fd)
    return moved


class BrowserError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium with one page, ``width`` x ``height`` CSS pixels.

    ``offline=True`` makes every host name but 127.0.0.1 unresolvable, so a
    page that still fetches from the internet fails as it would on a machine
    without access. ``errors`` collects uncaught exceptions, ``console.error``
    calls and failed loads, each as one line of text.
    """

    def __init__(self, executable=None, width=1280, height=900, offline=True, timeout=60.0):
        exe = executable or find_chromium()
        if exe is None:
            raise BrowserError(f"no Chromium on PATH (install it: {INSTALL}, "
                               "or set FASTNN_CHROMIUM to its executable)")
        self.timeout = timeout
        self.errors = []
        self._events = []
        self._buffer = b""
        self._next_id = 0
        self._profile = tempfile.mkdtemp(prefix="fastnn-chromium-")
        args = ["--headless=new", "--remote-debugging-pipe", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage",
                "--disable-extensions", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={self._profile}", f"--window-size={width},{height}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses root with its sandbox on
        if offline:
            args.append("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
        cmd_read, self._cmd = os.pipe()
        self._evt, evt_write = os.pipe()
        # Above 4, so that moving them to 3 and 4 cannot close one another.
        cmd_read, evt_write = (_above(fd, 10) for fd in (cmd_read, evt_write))
        # A small Python trampoline moves the pipe ends to fds 3 and 4 (sh
        # cannot name fds above 9) and becomes Chromium.
        move = ("import os, sys; a, b = int(sys.argv[1]), int(sys.argv[2]); "
                "os.dup2(a, 3); os.dup2(b, 4); os.close(a); os.close(b); "
                "os.execv(sys.argv[3], sys.argv[3:])")
        stderr = None if os.environ.get("FASTNN_CHROMIUM_LOG") else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [sys.executable, "-c", move, str(cmd_read), str(evt_write), exe, *args,
             "about:blank"],
            pass_fds=(cmd_read, evt_write), stdout=subprocess.DEVNULL, stderr=stderr)
        os.close(cmd_read)
        os.close(evt_write)
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self._session = self.send("Target.attachToTarget", targetId=target,
                                      flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable", session=True)
            self.send("Emulation.setDeviceMetricsOverride", session=True, width=width,
                      height=height, deviceScaleFactor=1, mobile=False)
        except Exception:
            self.close()
            raise

    # -- protocol -----------------------------------------------------------
    def _read_message(self, deadline):
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._evt], [], [], left)
            if ready:
                chunk = os.read(self._evt, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium exited (status {self._proc.poll()})")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self._note(message)
        return message

    def _note(self, event):
        self._events.append(event)
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"uncaught: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.errors.append(f"console.error: {args}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip())

    def send(self, method, session=False, **params):
        """Send one command; return its result (raise BrowserError on an error)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._cmd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def _wait_event(self, method, deadline):
        while True:
            for i, event in enumerate(self._events):
                if event["method"] == method:
                    del self._events[: i + 1]
                    return event
            self._events.clear()
            self._read_message(deadline)

    # -- page ---------------------------------------------------------------
    def goto(self, url):
        """Load ``url`` and wait for its load event (a change of the
        fragment alone only navigates within the page)."""
        self._events.clear()
        result = self.send("Page.navigate", session=True, url=url)
        if result.get("errorText"):
            raise BrowserError(f"cannot load {url}: {result['errorText']}")
        if result.get("loaderId"):  # none for a same-document (#fragment) change
            self._wait_event("Page.loadEventFired", time.monotonic() + self.timeout)

    def evaluate(self, expression):
        """The value of a JavaScript expression (promises are awaited)."""
        result = self.send("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(details.get("exception", {}).get("description")
                               or details.get("text"))
        return result["result"].get("value")

    def wait_for(self, expression, timeout=None):
        """Poll ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression}")
            time.sleep(0.1)

    def screenshot(self, path, full_page=False):
        """Write a PNG of the viewport (or the whole page) to ``path``."""
        params = {"format": "png"}
        if full_page:
            size = self.evaluate("[document.documentElement.scrollWidth,"
                                 " document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1})
        data = self.send("Page.captureScreenshot", session=True, **params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        if self._proc.poll() is None:
            try:
                os.write(self._cmd, json.dumps({"id": 0, "method": "Browser.close"}).encode()
                         + b"\0")
                self._proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        for fd in (self._cmd, self._evt):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Server:
    """Serve a directory on 127.0.0.1 (an ephemeral port) from a thread, as
    ``asv preview`` does: pages that fetch JSON do not work from file://."""

    def __init__(self, directory):
        handler = partial(_QuietHandler, directory=str(directory))
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
