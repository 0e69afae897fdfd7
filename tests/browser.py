"""Headless Chromium for the page tests: load a page as a user would, with
the network blocked, and read back the DOM after its scripts have run."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)"
)
# No name resolves and every proxied connection goes nowhere: a page that
# needed the network would fail.
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"]


def run(url: str, *extra: str, budget_ms: int = 20_000, offline: bool = True, timeout: float = 90) -> str:
    """The DOM of `url` once its scripts and timers have run for `budget_ms` of virtual time."""
    assert CHROMIUM is not None
    profile = _new_profile()
    try:
        command = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            *(OFFLINE if offline else []),
            *extra,
            "--dump-dom",
            url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        _remove(profile)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _new_profile() -> str:
    return tempfile.mkdtemp(prefix="charlstm-chromium-")


def _remove(profile: str) -> None:
    """Chromium's helper processes may still be writing to its profile as it
    closes, so one removal can fail; a few tries, then what is left is left."""
    for _ in range(50):
        shutil.rmtree(profile, ignore_errors=True)
        if not os.path.exists(profile):
            return
        time.sleep(0.1)


def until(check: Callable[[], Any], what: str, timeout: float = 120, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"gave up waiting for {what}")


# What a screen reader's list of landmarks would miss (axe-core's "region"
# rule, in short): the ids or tags of shown elements with text of their own,
# or controls, outside every landmark. A page's whole content belongs in one.
OUTSIDE_LANDMARKS = """(() => {
  const landmark = "main, header, nav, footer, aside, [role=main], [role=banner], [role=region][aria-label]";
  return Array.from(document.body.querySelectorAll("*")).filter((e) => {
    if (e.closest(landmark) || e.closest("script, noscript, template, [hidden]")) return false;
    const box = e.getBoundingClientRect();
    const own = Array.from(e.childNodes).some((n) => n.nodeType === 3 && n.data.trim());
    return box.width > 0 && box.height > 0 && (own || e.matches("input, select, textarea, button"));
  }).map((e) => e.id || e.tagName.toLowerCase());
})()"""


def page_url(path: Path, test: dict) -> str:
    return path.resolve().as_uri() + "#test=" + urllib.parse.quote(json.dumps(test))


def element_text(dom: str, element_id: str) -> str:
    """The text of the element with this id (no nested elements) in a dumped DOM."""
    found = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', dom, re.DOTALL)
    assert found, f"no #{element_id} in the page"
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(2)))


def hook_result(dom: str) -> dict:
    text = element_text(dom, "test-output")
    assert text, "the page's test hook wrote nothing: its script did not run"
    return json.loads(text)


# argv: the read and write ends, then the command: each end first moved above
# both targets, so that one already at 3 or 4 is not written over by the other.
_PIPES_AS_3_AND_4 = """
import os, sys
high = [os.dup(int(fd)) for fd in sys.argv[1:3]]
while min(high) <= 4:
    high = [os.dup(fd) for fd in high]
os.dup2(high[0], 3)
os.dup2(high[1], 4)
os.execvp(sys.argv[3], sys.argv[3:])
"""


class Session:
    """Chromium driven over the DevTools protocol on a pipe, for a page that
    talks to a live server (virtual time does not wait for a streamed
    response, so --dump-dom would read the page too early)."""

    def __init__(self, *extra: str):
        assert CHROMIUM is not None
        ours_to_read, theirs_to_write = os.pipe()
        theirs_to_read, ours_to_write = os.pipe()

        self.profile = _new_profile()
        command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        command += [
            "--disable-background-networking",
            f"--user-data-dir={self.profile}",
            "--remote-debugging-pipe",
        ]
        # The protocol's fixed descriptors, 3 and 4, set by a small program
        # that then becomes Chromium: a preexec_fn would run Python in a child
        # forked from this threaded process (JAX's), which can deadlock.
        wrapper = [sys.executable, "-c", _PIPES_AS_3_AND_4, str(theirs_to_read), str(theirs_to_write)]
        self.process = subprocess.Popen(
            [*wrapper, *command, *extra, "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(theirs_to_read, theirs_to_write),
        )
        os.close(theirs_to_read)
        os.close(theirs_to_write)
        self.reader, self.writer = os.fdopen(ours_to_read, "rb"), os.fdopen(ours_to_write, "wb")
        self.next_id, self.buffer = 0, b""
        try:
            page = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
            self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        except BaseException:  # a browser that never answered: nobody will call close()
            self.close()
            raise

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.writer.write(json.dumps(message).encode() + b"\0")
        self.writer.flush()
        while True:
            while b"\0" not in self.buffer:
                data = os.read(self.reader.fileno(), 65536)
                assert data, "Chromium closed the DevTools pipe"
                self.buffer += data
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply["error"]
                return reply["result"]

    def open(self, url: str) -> None:
        self.call("Page.navigate", self.session, url=url)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", self.session, expression=expression, returnByValue=True)
        return result["result"].get("value")

    def press(self, key: str, code: str, modifiers: int = 0) -> None:
        """A key pressed and released as a user's keyboard would, on the focused
        element (`modifiers`: 2 is Ctrl, 4 is Meta, as DevTools numbers them)."""
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", self.session, type=kind, key=key, code=code, modifiers=modifiers)

    def prefer_dark(self) -> None:
        """Emulate a reader whose system asks for a dark theme."""
        features = [{"name": "prefers-color-scheme", "value": "dark"}]
        self.call("Emulation.setEmulatedMedia", self.session, features=features)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self.reader.close()
        self.writer.close()
        _remove(self.profile)
