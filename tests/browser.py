"""Headless Chromium for the page tests: load a page as a user would, with
the network blocked, and read back the DOM after its scripts have run."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

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
    with tempfile.TemporaryDirectory(prefix="charlstm-chromium-") as profile:
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
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


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
