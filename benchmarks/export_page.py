"""The exported page in headless Chromium, in real time: its sampling speed,
and the README's picture of it writing.

    python benchmarks/export_page.py RUN [--shot docs/export-page.png] [--json out.json]

Exports RUN's model as a float32 and a float16 page, times each page's own
sampling hook (3,000 characters at temperature 1), then fills in the float32
page's controls, presses Generate, and takes the picture once the page says
it has written every character. Needs Chromium (`apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' Chromium driver

from machine import provenance  # noqa: E402

import charlstm  # noqa: E402
from tests import browser  # noqa: E402

PRIME = "ROMEO.\nO, speak again, bright angel!"


def wait_for(session: browser.Session, expression: str, limit_s: float = 120) -> str:
    """The value of `expression` once it is a non-empty string."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = session.evaluate(expression)
        if value:
            return str(value)
        time.sleep(0.1)
    sys.exit(f"the page did not answer in {limit_s:g} s: {expression}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the run to export")
    parser.add_argument("--shot", type=Path, help="write the picture here")
    parser.add_argument(
        "--length", type=int, default=600, help="characters the screenshot's page writes (the timing writes 3,000)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not args.run.exists():
        parser.error(f"no run {args.run}: give a run directory or checkpoint (charlstm runs lists them)")
    if browser.CHROMIUM is None:
        sys.exit("no Chromium found: apt-get install chromium")
    model = charlstm.load(args.run)
    results: dict = {"date": time.strftime("%Y-%m-%d"), "run": str(args.run)}
    with tempfile.TemporaryDirectory() as tmp:
        pages = {"float32": model.export_html(Path(tmp) / "f32.html")}
        pages["float16"] = model.export_html(Path(tmp) / "f16.html", half=True)
        session = browser.Session()
        try:
            for name, page in pages.items():
                # Empty the last page's answer, so that only the new page's counts.
                session.evaluate("(e => e && (e.textContent = ''))(document.getElementById('test-output'))")
                session.open(browser.page_url(page.path, {"prime": "ROMEO.\n", "bench": 3000}))
                found = json.loads(wait_for(session, "document.getElementById('test-output').textContent"))
                results[name] = {"page_bytes": page.bytes, "chars_per_s": round(found["bench_chars_per_s"])}
                print(f"{name}: {page.bytes / 1e6:.1f} MB, {found['bench_chars_per_s']:,.0f} chars/s", flush=True)
            if args.shot:
                size = {"width": 1000, "height": 760, "deviceScaleFactor": 1, "mobile": False}
                session.call("Emulation.setDeviceMetricsOverride", session.session, **size)
                ui = {"temperature": 0.8, "length": args.length, "seed": 7}
                session.open(browser.page_url(pages["float32"].path, {"prime": PRIME, "ui": ui}))
                status = "document.getElementById('status').textContent"
                done = f"(s => s.startsWith('{args.length} characters') && s)({status})"
                results["shown"] = wait_for(session, done)
                shot = session.call("Page.captureScreenshot", session.session, format="png")
                args.shot.write_bytes(base64.b64decode(shot["data"]))
                print(f"{args.shot}: the page says {results['shown']}")
        finally:
            session.close()
    if args.json:
        args.json.write_text(json.dumps({**provenance(), **results}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
