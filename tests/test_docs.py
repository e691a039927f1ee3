"""The documentation site builds with warnings as errors (CONTRIBUTING's
command), its gallery runs the tutorial, the reference pages are there, and
the landing page, an API page and the tutorial render in headless Chromium,
offline, without JavaScript errors and with the tutorial's figures."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ("sphinx", "pydata_sphinx_theme", "numpydoc", "sphinx_gallery", "myst_parser")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("docs")
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: pip install '.[docs]'")
    if not (ROOT / "docs" / "conf.py").exists():
        pytest.skip("no docs/ beside the tests (an installed copy of the tests)")
    out = tmp_path / "html"
    r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                        "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(out)],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return out


def test_docs_build_with_warnings_as_errors(site):
    out = site
    tutorial = (out / "auto_examples" / "from_scratch.html").read_text()
    assert "Backpropagation" in tutorial and "x the NumPy speed" in tutorial
    assert "fit" in (out / "api" / "fastnn.Network.html").read_text()
    assert "label_smoothing" in (out / "api" / "fastnn.MLPClassifier.html").read_text()
    assert "--clip-norm" in (out / "cli.html").read_text()
    for page in ("guide", "performance", "ARCHITECTURE", "dask", "changelog"):
        assert (out / f"{page}.html").exists(), page


def test_pages_render_offline_in_headless_chromium(site):
    spec = importlib.util.spec_from_file_location("chromium", ROOT / "bench" / "chromium.py")
    chromium = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chromium)
    if chromium.find_chromium() is None:
        pytest.skip(f"no Chromium: install it with `{chromium.INSTALL}`")
    seen = {}
    with chromium.Server(site) as server, chromium.Chromium() as browser:
        for page in ("index.html", "api/fastnn.Network.html", "auto_examples/from_scratch.html"):
            browser.goto(server.url + page)
            seen[page] = browser.evaluate(
                "[document.title, [...document.images].filter(i => i.complete &&"
                " i.naturalWidth > 0 && i.src.includes('sphx_glr')).length,"
                " document.querySelectorAll('link[rel=stylesheet]').length]")
        errors = list(browser.errors)
    assert not errors, errors
    assert "fastnn" in seen["index.html"][0]
    assert "Network" in seen["api/fastnn.Network.html"][0]
    assert seen["auto_examples/from_scratch.html"][1] >= 2, seen  # the tutorial's figures
    assert all(n_css > 0 for _, _, n_css in seen.values())


@pytest.mark.parametrize("name", ["fastnn.MLPClassifier", "fastnn.MLPRegressor"])
def test_every_estimator_parameter_is_documented(name):
    """numpydoc's validation (as scikit-learn's docstring tests): no
    constructor parameter missing from the docstring (PR01) and none
    documented that does not exist (PR02)."""
    validate = pytest.importorskip("numpydoc.validate")
    pytest.importorskip("sklearn")
    errors = [e for e in validate.validate(name)["errors"] if e[0] in ("PR01", "PR02", "GL08")]
    assert not errors, errors
