"""The asv dashboard, published from the checked-in history (bench/results)
by bench/publish_dashboard.py, served as ``asv preview`` serves it and
opened in headless Chromium with every host but 127.0.0.1 unresolvable:
the page must load without the internet, without JavaScript errors, and
draw the classic-epoch and matmul graphs with their points.
"""
import importlib.util
import itertools
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
HISTORY = 20  # commits of main in the checked-in history

pytest.importorskip("asv", reason="asv is not installed (pip install asv)")
pytestmark = pytest.mark.skipif(
    not any(RESULTS.glob("*/machine.json")) or not (ROOT / ".git").exists(),
    reason="no asv history here: run bench/asv_history.sh in a git checkout")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chromium = _load("chromium")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    return _load("publish_dashboard").publish(tmp_path_factory.mktemp("asv-html"))


def _points(dashboard, benchmark, **params):
    """Commits with a value for ``benchmark`` at ``params`` in its graph,
    the most on any one machine."""
    meta = json.loads((dashboard / "index.json").read_text())["benchmarks"][benchmark]
    combos = list(itertools.product(*meta["params"]))
    want = combos.index(tuple(repr(params[name]) for name in meta["param_names"]))
    best = 0
    for path in (dashboard / "graphs").glob(f"branch-*/machine-*/**/{benchmark}.json"):
        rows = json.loads(path.read_text())  # [[commit number, [value per combo]], ...]
        best = max(best, sum(1 for _, values in rows if values and values[want] is not None))
    return best


def test_published_page_loads_nothing_from_the_internet(dashboard):
    html = (dashboard / "index.html").read_text()
    assert "https://code.jquery.com" not in html and "cdnjs" not in html and "jsdelivr" not in html
    for src in ("vendor/js/jquery-3.3.1.min.js", "vendor/js/jquery.flot-0.8.3.js",
                "vendor/css/bootstrap.min.css"):
        assert src in html and (dashboard / src).is_file()
    licences = {p.name for p in (dashboard / "vendor" / "licenses").iterdir()}
    assert {"jquery.txt", "flot.txt", "bootstrap.txt"} <= licences


def test_an_unknown_cdn_script_is_an_error_naming_it():
    publish = _load("publish_dashboard")
    page = '<script src="https://cdn.example.invalid/new-lib.js"></script>'
    with pytest.raises(ValueError, match="new-lib.js"):
        publish.localise(page)


def test_history_holds_20_commits_of_the_classic_epoch_and_the_matmul(dashboard):
    assert _points(dashboard, "benchmarks.TimeEpoch.time_epoch",
                   workload="classic", dtype="float32") >= HISTORY
    assert _points(dashboard, "benchmarks.TimeMatmul.time_nn",
                   shape="classic", dtype="float32") >= HISTORY


def _graph_points(browser):
    # flot keeps the plot on its placeholder; count the drawn (x, y) pairs.
    return browser.wait_for(
        "(() => { const p = window.$ && $('#main-graph').data('plot');"
        " if (!p) return 0; let n = 0;"
        " for (const s of p.getData()) for (const d of s.data) if (d && d[1] != null) n++;"
        " return n; })()")


def test_dashboard_renders_offline_in_headless_chromium(dashboard):
    if chromium.find_chromium() is None:
        pytest.skip(f"no Chromium: install it with `{chromium.INSTALL}`")
    with chromium.Server(dashboard) as server, chromium.Chromium() as browser:
        browser.goto(server.url)
        browser.wait_for("document.body.innerText.includes('time_epoch')")
        text = browser.evaluate("document.body.innerText")
        assert "external (JavaScript) dependencies" not in text
        counts = {}
        for name in ("benchmarks.TimeEpoch.time_epoch", "benchmarks.TimeMatmul.time_nn"):
            browser.goto(f"{server.url}#{name}")
            counts[name] = _graph_points(browser)
        errors = list(browser.errors)
    assert not errors, errors
    assert all(n >= HISTORY for n in counts.values()), counts
