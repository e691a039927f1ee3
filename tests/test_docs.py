"""The documentation site builds with warnings as errors (CONTRIBUTING's
command), its gallery runs the tutorial, and the reference pages are there."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ("sphinx", "pydata_sphinx_theme", "numpydoc", "sphinx_gallery", "myst_parser")


def test_docs_build_with_warnings_as_errors(tmp_path):
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
    tutorial = (out / "auto_examples" / "from_scratch.html").read_text()
    assert "Backpropagation" in tutorial and "x the NumPy speed" in tutorial
    assert "fit" in (out / "api" / "fastnn.Network.html").read_text()
    assert "label_smoothing" in (out / "api" / "fastnn.MLPClassifier.html").read_text()
    assert "--clip-norm" in (out / "cli.html").read_text()
    for page in ("guide", "performance", "ARCHITECTURE", "dask", "changelog"):
        assert (out / f"{page}.html").exists(), page
