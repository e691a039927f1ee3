"""The side-by-side benchmark runs and reports what it measured (one timed
epoch only: correctness of the harness, not speed)."""
import io
import json

import numpy as np
import pytest

from fastnn.integrations import benchmark


def test_compare_runs_each_system_in_its_own_process_and_writes_json(tmp_path):
    out = io.StringIO()
    res = benchmark.run(("classic",), epochs=1, systems=["fastnn", "reference", "jax"],
                        out=out)
    rows = {r["system"]: r for r in res["workloads"]["classic"]["results"]}
    assert rows["fastnn"]["vs_fastnn"] == 1.0
    ref = rows["fastnn.reference (NumPy)"]
    assert ref["s_per_epoch"] > 0 and ref["gflops"] > 0 and len(ref["all_epochs"]) == 1
    # JAX: measured when installed, otherwise skipped with a note, never an error.
    assert "JAX (jit, lax.scan)" in rows or "not installed" in res["skipped"]["JAX (jit, lax.scan)"]
    assert res["process_per_system"] is True
    text = out.getvalue()
    assert "classic: [784, 100, 50, 10]" in text and "fastnn.reference (NumPy)" in text
    json.dumps(res)  # serialisable as the --json output


def test_the_predict_workload_times_probabilities_of_the_test_set():
    # The reference alone: fastnn's predict is tested elsewhere, and timing
    # it here would compile it cold (~15 s of the suite).
    out = io.StringIO()
    res = benchmark.run(("predict",), epochs=1, systems=["reference"], out=out, isolate=False)
    (row,) = res["workloads"]["predict"]["results"]
    assert row["system"] == "fastnn.reference forward (NumPy)" and row["vs_fastnn"] is None
    assert row["s_per_epoch"] > 0 and len(row["all_epochs"]) == 20  # >= 20 calls timed
    assert "class probabilities of 10000 MNIST test rows" in out.getvalue()


def test_the_small_workloads_time_whole_fits_with_their_epochs():
    pytest.importorskip("sklearn")
    out = io.StringIO()
    res = benchmark.run(("iris",), epochs=1, systems=["fastnn", "sklearn"], out=out,
                        isolate=False)
    rows = {r["system"]: r for r in res["workloads"]["iris"]["results"]}
    ours, theirs = rows["fastnn MLPClassifier"], rows["scikit-learn MLPClassifier"]
    assert len(ours["all_fits"]) == 7 and ours["vs_fastnn"] == 1.0
    assert 1 <= ours["n_iter"] <= 200 and 1 <= theirs["n_iter"] <= 200
    # (the ratio is of the unrounded medians, the seconds are rounded)
    assert theirs["vs_fastnn"] == pytest.approx(theirs["s_per_fit"] / ours["s_per_fit"],
                                                rel=0.01, abs=0.02)
    assert "iris: MLPClassifier(hidden_layer_sizes=(50,)" in out.getvalue()


def test_tabular_workloads_train_each_task_and_print_a_summary():
    pytest.importorskip("sklearn")
    x, y = benchmark.tabular_data("covtype")
    assert x.shape == (100_000, 54) and x.dtype == "float32" and set(y) == set(range(7))
    x, y = benchmark.tabular_data("housing", "float64")
    assert x.dtype == "float64" and y.shape == (50_000, 1) and y.std() > 0.1
    out = io.StringIO()
    res = benchmark.run(("housing",), epochs=1, systems=["reference", "sklearn", "torch1"],
                        out=out, isolate=False)
    rows = {r["system"]: r for r in res["workloads"]["housing"]["results"]}
    assert "scikit-learn MLP (partial_fit)" in rows
    assert rows["fastnn.reference (NumPy)"]["gflops"] > 0
    if "torch" not in str(res["skipped"]):
        assert "PyTorch (eager, 1 thread)" in rows
    text = out.getvalue()
    assert "housing: [8, 64, 64, 1], 50000 synthetic rows, batch 64, adam" in text
    assert "tabular summary" in text
    assert res["tile_peak_gflops"] > 0 and "register tile on L1 data" in text


def test_only_names_known_systems_and_a_workload_none_of_them_runs_is_said(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--workload", "classic", "--only", "pytorch", "--no-startup"])
    err = capsys.readouterr().err
    assert "invalid choice: 'pytorch'" in err and "torch" in err
    out = io.StringIO()
    res = benchmark.run(("classic",), epochs=1, systems=["onnxruntime"], out=out)
    assert res["workloads"] == {}
    assert "classic: none of onnxruntime runs this workload" in out.getvalue()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_tile_ceiling_times_real_products_of_the_register_tile(dtype):
    fn, mr, nr, k = benchmark._tile_loop(dtype)
    rng = np.random.default_rng(1)
    a = rng.standard_normal(2 * mr * k).astype(dtype)
    b = rng.standard_normal(k * nr).astype(dtype)
    out = np.empty(2, dtype)
    fn(a, b, 3, out)  # calls on A's panels 0, 1, 0: their products' entries 0, 1, 2
    prods = [(a[p * mr * k:(p + 1) * mr * k].reshape(mr, k) @ b.reshape(k, nr)).ravel()
             for p in (0, 1)]
    want = prods[0][0] + prods[1][1] + prods[0][2]
    tol = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol * k)
    assert benchmark.tile_peak(dtype, reps=100, rounds=2) > 0
