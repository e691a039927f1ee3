"""A notebook as a data scientist writes one, executed by nbconvert in a
Jupyter kernel, and its saved outputs checked: one display per object,
text that reads as text, bars that end finished (or say why they stopped),
never a stale "0%"."""
import re

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbconvert")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

pytestmark = pytest.mark.both_backends

CELLS = [
    # 0
    "import numpy as np\n"
    "import fastnn\n"
    "from fastnn import datasets\n"
    "(x, y), (xt, yt) = datasets.load_mnist()\n"
    "x, y = x[:3000], y[:3000]",
    # 1: a bar over 6 epochs, and the history dict as the cell's value
    "net = fastnn.Network([784, 32, 10], seed=0)\n"
    "history = net.fit(x, y, epochs=6, batch_size=64, lr=0.3, progress=True)\n"
    "len(history['loss'])",
    # 2
    "net.summary()",
    # 3
    "net",
    # 4
    "net.plot_history()",
    # 5: an estimator with a bar, shown as the cell's value
    "clf = fastnn.MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=0,\n"
    "                           progress=True).fit(x, y)\n"
    "clf",
    # 6: a fit that stops early
    "stopper = fastnn.MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, random_state=0,\n"
    "                               early_stopping=True, n_iter_no_change=2, tol=10.0,\n"
    "                               progress=True).fit(x, y)\n"
    "stopper.n_iter_",
    # 7: a fit that a callback interrupts
    "def halt(net, history):\n"
    "    if len(history['loss']) == 2:\n"
    "        raise KeyboardInterrupt\n"
    "try:\n"
    "    fastnn.Network([784, 8, 10], seed=0).fit(x, y, epochs=9, progress=True,\n"
    "                                             callbacks=[halt])\n"
    "except KeyboardInterrupt:\n"
    "    print('interrupted')",
]


@pytest.fixture(scope="module")
def executed(fastnn_backend, tmp_path_factory):
    """The notebook after nbconvert's ExecutePreprocessor ran it (the kernel
    inherits FASTNN_BACKEND), written to disk and read back as saved."""
    from nbconvert.preprocessors import ExecutePreprocessor

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    directory = tmp_path_factory.mktemp("notebook")
    ExecutePreprocessor(timeout=600, kernel_name="python3").preprocess(
        nb, {"metadata": {"path": str(directory)}})
    path = directory / "run.ipynb"
    nbformat.write(nb, str(path))
    return nbformat.read(str(path), as_version=4)


def outputs(nb, i):
    return nb.cells[i].outputs


def texts(output):
    if output.output_type == "stream":
        return output.text
    return output.get("data", {}).get("text/plain", "")


def bars(nb, i):
    return [o.data for o in outputs(nb, i) if o.output_type == "display_data"
            and o.data.get("text/plain", "").startswith("fastnn:")]


def test_no_cell_raised(executed):
    errors = [(i, o.ename) for i, cell in enumerate(executed.cells)
              for o in cell.outputs if o.output_type == "error"]
    assert errors == []


def test_the_saved_bar_is_finished(executed):
    (bar,) = bars(executed, 1)
    assert re.match(r"fastnn: 6/6 epochs \[\d\d:\d\d\]  loss \d\.\d{4}  accuracy \d\.\d{4}$",
                    bar["text/plain"]), bar["text/plain"]
    assert '<progress value="6" max="6"' in bar["text/html"]
    assert outputs(executed, 1)[-1].data["text/plain"] == "6"


def test_an_estimator_bar_is_finished_and_its_html_follows(executed):
    (bar,) = bars(executed, 5)
    assert bar["text/plain"].startswith("fastnn: 5/5 epochs")
    shown = outputs(executed, 5)[-1]
    assert shown.output_type == "execute_result" and "text/html" in shown.data
    assert "MLPClassifier" in shown.data["text/html"]


def test_a_bar_says_why_it_stopped(executed):
    (early,) = bars(executed, 6)
    n_iter = int(outputs(executed, 6)[-1].data["text/plain"])
    assert n_iter < 200
    assert early["text/plain"].startswith(f"fastnn: stopped early: {n_iter}/200 epochs")
    (interrupted,) = bars(executed, 7)
    assert interrupted["text/plain"].startswith(
        "fastnn: stopped by KeyboardInterrupt in epoch 3: 2/9 epochs")
    assert "#c62828" in interrupted["text/html"]
    assert outputs(executed, 7)[-1].text == "interrupted\n"


def test_no_stale_bar_anywhere_in_the_saved_file(executed):
    saved = nbformat.writes(executed)
    assert not re.search(r"\d+%\|", saved), "a tqdm bar's text"
    assert "IProgress" not in saved and "widget-view" not in saved
    for i in range(len(CELLS)):
        for data in bars(executed, i):
            assert not re.search(r": 0/\d+ epochs", data["text/plain"])


def test_summary_prints_text_once(executed):
    (out,) = outputs(executed, 2)
    assert out.output_type == "stream" and out.name == "stdout"
    assert "784" in out.text and "\\n" not in out.text and out.text.count("\n") > 3


def test_a_network_shows_as_html(executed):
    (out,) = outputs(executed, 3)
    assert out.output_type == "execute_result"
    page = out.data["text/html"]
    assert "784" in page and "32" in page and "float" in page
    assert out.data["text/plain"].startswith("Network(")


def test_plot_history_draws_one_figure_and_returns_axes(executed):
    images = [o for o in outputs(executed, 4) if "image/png" in o.get("data", {})]
    assert len(images) == 1
    (value,) = [o for o in outputs(executed, 4) if o.output_type == "execute_result"]
    assert "Axes" in value.data["text/plain"]


def test_the_saved_notebook_renders_to_html_with_the_final_bars(executed):
    from nbconvert import HTMLExporter

    page, _ = HTMLExporter().from_notebook_node(executed)
    finished = [tag for tag in re.findall(r"<progress[^>]*>", page)
                if 'value="6"' in tag and 'max="6"' in tag]
    assert finished and "fastnn: 5/5 epochs" in page
    assert not re.search(r"\d+%\|", page)
