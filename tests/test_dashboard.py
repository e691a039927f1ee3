"""The published asv dashboard (.asv/html, built by bench/asv_history.sh).

Skipped unless the dashboard has been built here (it is git-ignored: a
fresh clone has none). The browser check also needs Playwright with its
Chromium (``pip install playwright && playwright install chromium``, or
Debian's ``chromium`` via ``FASTNN_CHROMIUM=/usr/bin/chromium``); without one it
is skipped with the reason.
"""
import json
import os
from pathlib import Path

import pytest

HTML = Path(__file__).resolve().parents[1] / ".asv" / "html"

pytestmark = pytest.mark.skipif(not (HTML / "index.html").is_file(),
                                reason="no dashboard: run bench/asv_history.sh first")


def test_published_graphs_hold_the_epoch_and_matmul_series():
    index = json.loads((HTML / "index.json").read_text())
    names = set(index["benchmarks"])
    assert "benchmarks.TimeEpoch.time_epoch" in names
    assert "benchmarks.TimeMatmul.time_nn" in names
    graphs = list((HTML / "graphs").rglob("benchmarks.TimeEpoch.time_epoch.json"))
    assert graphs, "no graph data for the epoch benchmark"
    points = json.loads(graphs[0].read_text())
    assert len(points) >= 2  # a history, not a single commit


def test_dashboard_renders_in_headless_chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    errors = []
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=os.environ.get("FASTNN_CHROMIUM"))
        except Exception as e:  # no browser installed
            pytest.skip(f"no Chromium for Playwright: {str(e).splitlines()[0]}")
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((HTML / "index.html").as_uri())
        page.wait_for_selector("text=time_epoch", timeout=30000)
        text = page.inner_text("body")
        browser.close()
    assert not errors, errors
    assert "time_epoch" in text and "time_nn" in text
