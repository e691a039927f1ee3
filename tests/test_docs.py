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


def _public_api():
    """Every public class, function and method a user reaches: fastnn's
    names, their public methods, fastnn.datasets and fastnn.dask."""
    import inspect

    import fastnn
    import fastnn.datasets
    names = []
    for module, prefix in ((fastnn, "fastnn"), (fastnn.datasets, "fastnn.datasets")):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and not issubclass(obj, Exception):
                names.append(f"{prefix}.{name}")
                names += [f"{prefix}.{name}.{m}" for m, _ in inspect.getmembers(obj)
                          if not m.startswith("_") and callable(getattr(obj, m))]
            elif inspect.isfunction(obj):
                names.append(f"{prefix}.{name}")
    try:
        import fastnn.dask
        names += [f"fastnn.dask.{n}" for n in fastnn.dask.__all__]
    except ImportError:
        pass
    return names


def test_every_public_parameter_is_documented():
    """numpydoc's validation (as scikit-learn's docstring tests) of every
    public class, function and method: none without a docstring (GL08), no
    parameter missing from its docstring (PR01), none documented that does
    not exist (PR02)."""
    validate = pytest.importorskip("numpydoc.validate")
    pytest.importorskip("sklearn")
    names = _public_api()
    assert "fastnn.MLPClassifier" in names and "fastnn.Network.fit" in names
    problems = {name: [e for e in validate.validate(name)["errors"]
                       if e[0] in ("PR01", "PR02", "GL08")] for name in names}
    assert not {k: v for k, v in problems.items() if v}


def test_the_public_api_is_type_annotated():
    """Every parameter and return of the public functions and methods has a
    type hint that resolves (``py.typed`` tells type checkers to read them),
    the estimators' constructors too."""
    import importlib
    import inspect
    import typing
    from pathlib import Path

    import fastnn
    pytest.importorskip("sklearn")
    assert (Path(fastnn.__file__).parent / "py.typed").is_file()
    missing = []
    for name in _public_api():
        module, _, attr = name.rpartition(".")
        try:
            owner = importlib.import_module(module)
        except ImportError:
            owner = eval(module, {"fastnn": fastnn})  # a class: fastnn.Network
        obj = getattr(owner, attr)
        if inspect.isclass(obj):
            obj = obj.__init__
        if not callable(obj) or obj.__module__ is None or not obj.__module__.startswith("fastnn"):
            continue  # inherited from scikit-learn (get_params, score, ...)
        hints = typing.get_type_hints(obj)
        params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
        missing += [f"{name}({p})" for p in params if p not in hints]
        if "return" not in hints:
            missing.append(f"{name} -> ?")
    assert not missing, missing
