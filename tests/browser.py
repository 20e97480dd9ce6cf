"""Headless Chromium for the report's browser test: measure a page's layout, take a screenshot.

The report holds no script, so measuring happens on a copy: ``measure`` adds one script to a copy of
the page that, once everything has loaded, records each table's width against its card's content
box, whether every image decoded, and the page's own width, into a ``<pre>`` that Chromium's
``--dump-dom`` prints. ``print_media`` applies the page's print stylesheet on screen (at an A4
page's width) to check the printed layout the same way.

Debian's ``chromium`` is installed by tests/install_browser.sh (root + apt-get). Without it the test
skips, unless AOIDEFT_REQUIRE_BROWSER=1 (set by .ci/run), where that is a failure instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
A4_CSS_PX = 718  # 210 mm less the print stylesheet's 12 mm margins, at 96 px per inch
RESULT_ID = "aoideft-layout"
_MEASURE = """<script>
window.addEventListener("load", () => {
  const result = {tables: [], images: [], page: {}};
  document.querySelectorAll("table").forEach((table, index) => {
    const card = table.closest("section") || document.body;
    const style = getComputedStyle(card), box = card.getBoundingClientRect(), own = table.getBoundingClientRect();
    const left = box.left + parseFloat(style.paddingLeft), right = box.right - parseFloat(style.paddingRight);
    result.tables.push({index, id: table.id, section: card.id, width: own.width, room: right - left,
      overflow: own.right > right + 0.5 || own.left < left - 0.5 || table.scrollWidth > table.clientWidth + 1});
  });
  document.querySelectorAll("img").forEach((img, index) =>
    result.images.push({index, alt: img.alt, loaded: img.complete && img.naturalWidth > 0}));
  const root = document.documentElement;
  result.page = {scroll_width: root.scrollWidth, client_width: root.clientWidth, height: root.scrollHeight};
  const out = document.createElement("pre");
  out.id = "{RESULT_ID}";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>""".replace("{RESULT_ID}", RESULT_ID)


def find_browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def require_browser() -> str:
    """The browser's path; skips without one, or fails under AOIDEFT_REQUIRE_BROWSER=1 (CI)."""
    browser = find_browser()
    if browser:
        return browser
    reason = f"none of {', '.join(BROWSERS)} on PATH (tests/install_browser.sh installs Debian's chromium as root)"
    if os.environ.get("AOIDEFT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"AOIDEFT_REQUIRE_BROWSER=1 but no headless browser: {reason}")
    pytest.skip(f"no headless browser: {reason}")


def _run(browser: str, profile: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{Path(browser).name} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return proc


def measure(browser: str, html: Path, work: Path, *, width: int, print_media: bool = False) -> dict:
    """Layout of ``html`` at a ``width`` px wide window (see the module docstring)."""
    text = html.read_text(encoding="utf-8")
    if print_media:
        text = text.replace("@media print", "@media all")
    copy = work / f"measure-{width}{'-print' if print_media else ''}.html"
    copy.write_text(text.replace("</body>", _MEASURE + "</body>", 1), encoding="utf-8")
    proc = _run(browser, work / "profile", f"--window-size={width},1000", "--virtual-time-budget=15000",
                "--dump-dom", copy.as_uri())
    found = re.search(rf'<pre id="{RESULT_ID}">(.*?)</pre>', proc.stdout, re.S)
    if not found:
        raise AssertionError(f"the measuring script left no result; the page's DOM ends: {proc.stdout[-2000:]}")
    return {**json.loads(_unescape(found.group(1))), "dom": proc.stdout}


def _unescape(text: str) -> str:
    return text.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def screenshot(browser: str, html: Path, out: Path, work: Path, *, width: int, height: int) -> Path:
    _run(browser, work / "profile", f"--window-size={width},{height}", "--virtual-time-budget=15000",
         f"--screenshot={out}", html.as_uri())
    if not out.is_file() or out.stat().st_size == 0:
        raise AssertionError(f"no screenshot written to {out}")
    return out


def artifact_dir() -> Path:
    """Where tests copy what a person should look at: AOIDEFT_ARTIFACT_DIR, else <repo>/test-artifacts."""
    root = os.environ.get("AOIDEFT_ARTIFACT_DIR") or Path(__file__).resolve().parents[1] / "test-artifacts"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
