"""Robustness: bad input is a clear error with the model untouched, training
never leaves a model worse than it found it, files are safe to load."""
import io
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import datasets

pytestmark = pytest.mark.both_backends


def small_net(output="softmax"):
    return fastnn.Network([4, 6, 3], output=output, seed=0)


GOOD_X = np.arange(40, dtype=np.float64).reshape(10, 4) / 40
GOOD_Y = np.arange(10) % 3


def bad_fit_cases():
    x, y = GOOD_X, GOOD_Y
    nan_x = x.copy()
    nan_x[3, 2] = np.nan
    inf_x = x.copy()
    inf_x[0, 0] = -np.inf
    onehot = np.eye(3)[y]
    two_hot = onehot.copy()
    two_hot[0, 1] = 1
    return [
        # (id, x, y, kwargs, error, words in the message)
        ("nan-x", nan_x, y, {}, ValueError, "x contains NaN"),
        ("inf-x", inf_x, y, {}, ValueError, "x contains NaN or infinity"),
        ("nan-label", x, np.where(y == 1, np.nan, y), {}, ValueError, "y labels must be integers"),
        ("x-1d", x[:, 0], y, {}, ValueError, "x must be 2-D"),
        ("x-3d", x.reshape(10, 2, 2), y, {}, ValueError, "x must be 2-D"),
        ("features", x[:, :3], y, {}, ValueError, "3 features but the network expects 4"),
        ("lengths", x, y[:9], {}, ValueError, "y has 9 rows but x has 10"),
        ("empty", x[:0], y[:0], {}, ValueError, "x is empty"),
        ("label-range", x, y + 1, {}, ValueError, "labels must be in 0..2"),
        ("negative-label", x, y - 1, {}, ValueError, "labels must be in 0..2"),
        ("fractional-label", x, y + 0.5, {}, ValueError, "labels must be integers"),
        ("not-one-hot", x, two_hot, {}, ValueError, "one-hot"),
        ("one-hot-width", x, onehot[:, :2], {}, ValueError, "one-hot y has 2 columns"),
        ("object-x", x.astype(object), y, {}, TypeError, "x must hold real numbers"),
        ("string-x", x.astype(str), y, {}, TypeError, "x must hold real numbers"),
        ("complex-x", x.astype(complex), y, {}, TypeError, "x must hold real numbers"),
        ("bool-x", x > 0.5, y, {}, TypeError, "x must hold real numbers"),
        ("string-y", x, y.astype(str), {}, TypeError, "y must hold numbers"),
        ("bool-y", x, (y > 0), {}, TypeError, "y labels must be integers"),
        ("batch-0", x, y, {"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ("batch-float", x, y, {"batch_size": 2.5}, TypeError, "batch_size must be an integer"),
        ("epochs-neg", x, y, {"epochs": -1}, ValueError, "epochs must be >= 0"),
        ("lr-0", x, y, {"lr": 0.0}, ValueError, "lr must be > 0"),
        ("lr-neg", x, y, {"lr": -0.1}, ValueError, "lr must be > 0"),
        ("lr-nan", x, y, {"lr": float("nan")}, ValueError, "lr must be finite"),
        ("lr-inf", x, y, {"lr": float("inf")}, ValueError, "lr must be finite"),
        ("lr-str", x, y, {"lr": "0.1"}, TypeError, "lr must be a real number"),
        ("momentum-1", x, y, {"momentum": 1.0}, ValueError, "momentum must be < 1"),
        ("momentum-neg", x, y, {"momentum": -0.5}, ValueError, "momentum must be >= 0"),
        ("optimizer", x, y, {"optimizer": "lbfgs"}, ValueError, "optimizer must be one of"),
        ("validation-shape", x, y, {"validation_data": (x[:, :2], y)}, ValueError,
         "validation_data x has 2 features"),
        ("validation-pair", x, y, {"validation_data": x}, TypeError, "validation_data must be"),
    ]


@pytest.mark.parametrize("case", bad_fit_cases(), ids=lambda c: c[0])
def test_fit_rejects_bad_input_clearly_and_leaves_the_model_unchanged(case):
    _, x, y, kw, err, words = case
    net = small_net()
    before = net.theta.copy()
    with pytest.raises(err) as e:
        net.fit(x, y, **kw)
    assert words in str(e.value)
    assert np.array_equal(net.theta, before)


@pytest.mark.parametrize("output,y,words", [
    ("identity", np.full((10, 3), np.inf), "y contains NaN or infinity"),
    ("identity", np.ones((10, 2)), "y must have shape"),
    ("identity", np.ones((10, 3), bool), "y must hold numbers"),
    ("sigmoid", np.full((10, 3), 2.0), "must lie in [0, 1]"),
    ("identity", np.ones((10, 3), complex), "y must hold numbers"),
])
def test_bad_targets_for_other_heads(output, y, words):
    net = small_net(output)
    before = net.theta.copy()
    with pytest.raises((ValueError, TypeError)) as e:
        net.fit(GOOD_X, y)
    assert words in str(e.value)
    assert np.array_equal(net.theta, before)


@pytest.mark.parametrize("kwargs,words", [
    (dict(layers=[4, 2.5, 3]), "layers[1] must be a positive integer"),
    (dict(layers=[4, -1]), "layers[1] must be a positive integer"),
    (dict(layers=[4, True]), "layers[1] must be a positive integer"),
    (dict(layers="43"), "layers[0] must be a positive integer"),
    (dict(layers=5), "layers must be a sequence"),
    (dict(layers=[4, 3], hidden="swish"), "hidden must be one of"),
    (dict(layers=[4, 3], output="softmin"), "output must be one of"),
    (dict(layers=[4, 3], init="orthogonal"), "init must be one of"),
    (dict(layers=[4, 3], dtype="int32"), "dtype must be one of"),
    (dict(layers=[4, 3], dtype="float16"), "dtype must be one of"),
    (dict(layers=[4, 3], seed=-1), "seed must be >= 0"),
    (dict(layers=[4, 3], seed=2**64), "seed must be <= 4294967295"),
])
def test_constructor_errors_name_the_argument(kwargs, words):
    with pytest.raises((ValueError, TypeError)) as e:
        fastnn.Network(**kwargs)
    assert words in str(e.value)


def test_predict_and_evaluate_reject_bad_input():
    net = small_net()
    for x, words in ((GOOD_X[:, :3], "features"), (GOOD_X[:0], "empty"),
                     (np.full((2, 4), np.nan), "NaN"), (GOOD_X.astype(complex), "real numbers")):
        for call in (net.predict, net.predict_proba,
                     lambda x: net.evaluate(x, GOOD_Y[:x.shape[0]])):
            with pytest.raises((ValueError, TypeError), match=words):
                call(x)
    with pytest.raises(ValueError, match="labels"):
        net.evaluate(GOOD_X, GOOD_Y + 3)


def test_batch_size_larger_than_the_data_is_clipped():
    a, b = small_net(), small_net()
    a.fit(GOOD_X, GOOD_Y, batch_size=1000, shuffle=False)
    b.fit(GOOD_X, GOOD_Y, batch_size=10, shuffle=False)
    assert np.array_equal(a.theta, b.theta)


@pytest.mark.parametrize("form", ["int", "float64", "fortran", "strided", "readonly",
                                  "list", "int32-labels", "float-labels"])
def test_accepted_input_forms_train_identically(form):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, (30, 4)).astype(np.float32)
    y = rng.integers(0, 3, 30)
    ref = small_net()
    ref.fit(x, y, epochs=2, batch_size=7)
    xx, yy = x, y
    if form == "int":
        xx = x.astype(np.int64)
    elif form == "float64":
        xx = x.astype(np.float64)
    elif form == "fortran":
        xx = np.asfortranarray(x)
    elif form == "strided":
        xx = np.repeat(x, 2, axis=1)[:, ::2]
    elif form == "readonly":
        xx = x.copy()
        xx.flags.writeable = False
        yy = y.copy()
        yy.flags.writeable = False
    elif form == "list":
        xx, yy = x.tolist(), y.tolist()
    elif form == "int32-labels":
        yy = y.astype(np.int32)
    elif form == "float-labels":
        yy = y.astype(np.float64)
    net = small_net()
    net.fit(xx, yy, epochs=2, batch_size=7)
    assert np.array_equal(net.theta, ref.theta)


def test_inputs_already_in_the_right_form_are_not_copied():
    from fastnn.engine import validation as V
    x = np.random.default_rng(0).random((50, 4)).astype(np.float32)
    assert V.as_float_matrix("x", x, np.float32, 4) is x
    ro = x.copy()
    ro.flags.writeable = False
    assert np.shares_memory(V.as_float_matrix("x", ro, np.float32, 4), ro)


@pytest.mark.kernels
def test_read_only_inputs_run_the_kernels_compiled_for_writable_ones(tmp_path):
    """Numba types read-only arrays apart (a second compile of every driver):
    a memory map opened "r" and read-only targets and weights are read in
    place through the writable variants, unchanged and with their flags."""
    from fastnn.kernels import train as K
    rng = np.random.default_rng(3)
    x = rng.random((90, 6)).astype(np.float32)
    y = rng.integers(0, 3, 90)
    w = rng.random(90) + 0.5
    ref = fastnn.Network([6, 5, 3], seed=0)
    ref.fit(x, y, epochs=2, batch_size=16)
    ref.evaluate(x, y)
    p_ref = ref.predict_proba(x)
    drivers = (K.train_batches, K.evaluate_batches, K.predict_batches, K.epoch_begin)
    before = [set(d.overloads) for d in drivers]
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")  # PROT_READ: a write would crash
    ym, wm = y.copy(), w.copy()
    ym.flags.writeable = wm.flags.writeable = False
    net = fastnn.Network([6, 5, 3], seed=0)
    net.fit(xm, ym, epochs=2, batch_size=16)
    assert net.evaluate(xm, ym) == ref.evaluate(x, y)
    assert np.array_equal(net.predict_proba(xm), p_ref)
    assert np.array_equal(net.theta, ref.theta)
    assert [set(d.overloads) for d in drivers] == before
    from fastnn.engine import validation as V
    wv = V.check_sample_weight(wm, 90)
    assert wv.flags.writeable and np.shares_memory(wv, wm)
    assert not (xm.flags.writeable or ym.flags.writeable or wm.flags.writeable)
    assert np.array_equal(xm, x) and np.array_equal(ym, y) and np.array_equal(wm, w)


def test_concurrent_predict_from_threads_matches_serial():
    rng = np.random.default_rng(1)
    net = fastnn.Network([20, 64, 32, 5], seed=0)
    x = rng.standard_normal((3000, 20)).astype(np.float32)
    net.fit(x, rng.integers(0, 5, 3000), epochs=1)
    chunks = [x[i::7] for i in range(7)] * 3
    serial = [net.predict_proba(c) for c in chunks]
    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(net.predict_proba, chunks))
    for s, p in zip(serial, parallel):
        assert np.array_equal(s, p)


# ------------------------------------------------------------ interruption
# A hang guard, not a timing: a lost SIGINT lets the 1000 epochs run on.
HANG_GUARD = 120


def test_ctrl_c_in_the_command_line_keeps_and_saves_the_last_epoch(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((20000, 64)).astype(np.float32)
    y = rng.integers(0, 10, 20000)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    model = tmp_path / "m.npz"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "fastnn", "train", "--data", str(tmp_path / "d.npz"),
           "--layers", "512,512", "--batch-size", "32", "--lr", "0.01"]
    # Compile first (a one-epoch run of the same configuration fills the
    # kernel cache), so the run below reaches its first epoch in seconds
    # however slow the machine's compiler is; the timeouts are hang guards.
    subprocess.run(cmd + ["--epochs", "1", "--quiet"], env=env, check=True, timeout=1200,
                   capture_output=True)
    proc = subprocess.Popen(
        cmd + ["--epochs", "1000", "--save", str(model), "--json", str(tmp_path / "h.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while True:  # readiness signal: the first epoch's row
            line = proc.stdout.readline()
            if not line or line.split()[:1] == ["1"]:
                break
        assert line, f"fastnn train ended before its first epoch: {proc.stderr.read()[-2000:]}"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_GUARD)
    finally:  # a lost SIGINT must not leave 1000 epochs running beside the suite
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted: keeping the model after epoch" in err
    assert "Traceback" not in err
    net = fastnn.Network.load(model)
    assert np.isfinite(net.theta).all()
    import json
    hist = json.loads((tmp_path / "h.json").read_text())["history"]
    assert len(hist["loss"]) >= 1


# ------------------------------------------------------------------- files
def test_a_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    net = small_net()
    path = tmp_path / "m.npz"
    net.save(path)
    good = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    net.theta[:] = 1
    with pytest.raises(OSError, match="disk full"):
        net.save(path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def _npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _forged_model(tmp_path, members):
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)
    return path


def _model_members(layers=(4, 6, 3)):
    net = fastnn.Network(list(layers), seed=0)
    m = {"fastnn_format": _npy_bytes(np.array(1)), "layers": _npy_bytes(np.array(layers)),
         "hidden": _npy_bytes(np.array("relu")), "output": _npy_bytes(np.array("softmax")),
         "dtype": _npy_bytes(np.array("float32"))}
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        m[f"W{l}"] = _npy_bytes(W)
        m[f"b{l}"] = _npy_bytes(b)
    return m


def test_load_refuses_huge_claims_before_allocating(tmp_path):
    m = _model_members()
    # A layer of 10^6 x 10^6 (4 TB of float32) that the file cannot hold.
    m["layers"] = _npy_bytes(np.array([1_000_000, 1_000_000]))
    with pytest.raises(ValueError, match="missing|truncated|unexpected"):
        fastnn.Network.load(_forged_model(tmp_path, m))
    # An array header claiming 10^12 items.
    m = _model_members()
    hdr = _npy_bytes(np.zeros(1, np.float32))
    m["b0"] = hdr.replace(b"(1,)", b"(1000000000000,)")
    with pytest.raises(ValueError, match="b0"):
        fastnn.Network.load(_forged_model(tmp_path, m))


def test_load_refuses_pickles_and_compressed_members(tmp_path):
    m = _model_members()
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    m["hidden"] = buf.getvalue()
    with pytest.raises(ValueError, match="objects"):
        fastnn.Network.load(_forged_model(tmp_path, m))
    path = tmp_path / "z.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in _model_members().items():
            zf.writestr(name + ".npy", data)
    with pytest.raises(ValueError, match="compressed"):
        fastnn.Network.load(path)


@pytest.mark.parametrize("mutate,words", [
    (lambda m: m.pop("W1"), "missing 'W1'"),
    (lambda m: m.update(fastnn_format=_npy_bytes(np.array(99))), "format version"),
    (lambda m: m.update(hidden=_npy_bytes(np.array("swish"))), "hidden must be one of"),
    (lambda m: m.update(layers=_npy_bytes(np.array([4, 0, 3]))), "positive integer"),
    (lambda m: m.update(W0=_npy_bytes(np.zeros((4, 6), np.float64))), "dtype float64"),
    (lambda m: m.update(b1=_npy_bytes(np.full(3, np.nan, np.float32))), "NaN"),
    (lambda m: m.update(extra=_npy_bytes(np.zeros(2))), "unexpected arrays"),
])
def test_load_checks_every_part(tmp_path, mutate, words):
    m = _model_members()
    mutate(m)
    with pytest.raises(ValueError, match=words):
        fastnn.Network.load(_forged_model(tmp_path, m))


_fuzz_dir = Path(tempfile.mkdtemp(prefix="fastnn-fuzz-"))
_valid_model = _fuzz_dir / "valid.npz"
small_net().save(_valid_model)
_VALID_MODEL = _valid_model.read_bytes()
_VALID_IDX = (struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 5, 4, 3)
              + bytes(range(60)))
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _mutations():
    return st.one_of(
        st.binary(max_size=600).map(lambda b: ("random", b)),
        st.tuples(st.integers(0, 10_000), st.integers(0, 255)).map(lambda t: ("flip", t)),
        st.integers(0, 10_000).map(lambda n: ("truncate", n)),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=2,
                 max_size=20).map(lambda t: ("flips", t)),
    )


def _apply(valid, mutation):
    kind, arg = mutation
    if kind == "random":
        return arg
    data = bytearray(valid)
    if kind == "truncate":
        return bytes(data[:arg % len(data)])
    for pos, val in ([arg] if kind == "flip" else arg):
        data[pos % len(data)] = val
    return bytes(data)


@FUZZ
@given(_mutations())
def test_fuzzed_model_files_load_or_raise_valueerror(mutation):
    path = _fuzz_dir / "fuzz.npz"
    path.write_bytes(_apply(_VALID_MODEL, mutation))
    try:
        net = fastnn.Network.load(path)
    except ValueError:
        return
    # A mutation that left a loadable model: it must be a sane one.
    assert np.isfinite(net.theta).all()
    assert net.layers[0] >= 1


@FUZZ
@given(_mutations(), st.booleans())
def test_fuzzed_idx_files_read_or_raise_valueerror(mutation, compress):
    import gzip
    data = _apply(_VALID_IDX, mutation)
    path = _fuzz_dir / "fuzz.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    try:
        arr = datasets.read_idx(path)
    except ValueError:
        return
    assert arr.nbytes <= len(data)


@FUZZ
@given(st.binary(min_size=1, max_size=400))
def test_random_gzip_streams_raise_valueerror(payload):
    path = _fuzz_dir / "fuzz.gz"
    path.write_bytes(b"\x1f\x8b" + payload)
    try:
        datasets.read_idx(path)
    except ValueError:
        pass


def test_idx_header_claiming_a_trillion_images_does_not_allocate(tmp_path):
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 10 ** 9, 28, 28)
                     + bytes(100))
    with pytest.raises(ValueError, match="header says"):
        datasets.read_idx(path)
