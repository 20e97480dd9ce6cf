"""The tiny three-phase run's DEFT_Loop_Report.html in a real browser (headless Chromium).

Layout at a 1,400 px window and with the print stylesheet at an A4 page's width: no table wider
than its card, no horizontal scrolling, every image decoded. Content: the delivered model and its
checkpoint named at the top, every iteration present. A full-page screenshot is kept under the
test's tmp dir and copied to test-artifacts/ (or AOIDEFT_ARTIFACT_DIR), whose path the run prints
at its end. Without Chromium the module skips, unless AOIDEFT_REQUIRE_BROWSER=1 (set by .ci/run).
"""

from __future__ import annotations

import re
import shutil

import pytest

import browser
from aoideft.fsutil import read_json

WINDOW = 1400


@pytest.fixture(scope="module")
def chromium() -> str:
    return browser.require_browser()


def _overflowing(layout: dict) -> list[str]:
    return [f"table {t['index']} ({t['id'] or 'no id'}) in #{t['section']}: {t['width']:.0f} px in {t['room']:.0f} px"
            for t in layout["tables"] if t["overflow"]]


def test_the_harness_sees_an_overflowing_table_and_a_broken_image(chromium, tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<html><body><section id="card" style="width:300px;padding:10px">'
                    '<table id="wide" style="width:900px"><tr><td>x</td></tr></table>'
                    '<img alt="broken" src="data:image/png;base64,iVBORw0KGgo="></section></body></html>')
    layout = browser.measure(chromium, page, tmp_path, width=WINDOW)
    assert _overflowing(layout) == ["table 0 (wide) in #card: 900 px in 300 px"]
    assert layout["images"] == [{"index": 0, "alt": "broken", "loaded": False}]


def test_the_tiny_runs_report_reads_well_in_a_browser(chromium, tiny_run, tmp_path, record_property):
    run, _ = tiny_run
    html = run / "DEFT_Loop_Report.html"
    best_model = read_json(run / "best_model.json")
    iterations = ["baseline", "iter1", "iter2", "final_automl"]

    layout = browser.measure(chromium, html, tmp_path, width=WINDOW)
    assert not _overflowing(layout), _overflowing(layout)
    assert layout["page"]["scroll_width"] <= WINDOW, layout["page"]
    assert len(layout["images"]) >= 10 and all(image["loaded"] for image in layout["images"]), \
        [image["alt"] for image in layout["images"] if not image["loaded"]]
    printed = browser.measure(chromium, html, tmp_path, width=browser.A4_CSS_PX, print_media=True)
    assert not _overflowing(printed), _overflowing(printed)
    assert printed["page"]["scroll_width"] <= browser.A4_CSS_PX, printed["page"]

    dom = layout["dom"]
    deploy = re.search(r'<section id="deploy">(.*?)</section>', dom, re.S).group(1)
    assert f'Deploy <span class="big">{best_model["iteration"]}</span>' in deploy
    assert best_model["checkpoint"] in deploy and "best_model_inference_spec.yaml" in deploy
    assert f'{best_model["deploy_threshold"]:.6g}' in deploy and best_model["deploy_threshold_from"] in deploy
    models = re.search(r'<table id="model-table">(.*?)</table>', dom, re.S).group(1)
    for label in iterations:
        assert f"<b>{label}</b>" in models, label
    for label in iterations[:-1]:
        assert f'id="it-{label}"' in dom, label
    assert 'class="verdict' in re.search(r'<section id="loop-effect">(.*?)</section>', dom, re.S).group(1)

    shot = browser.screenshot(chromium, html, tmp_path / "DEFT_Loop_Report-1400.png", tmp_path, width=WINDOW,
                              height=layout["page"]["height"])
    kept = browser.artifact_dir() / shot.name
    shutil.copyfile(shot, kept)
    record_property("artifact", str(kept))
    print(f"report screenshot: {kept}")
