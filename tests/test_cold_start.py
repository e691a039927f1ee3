"""The cold first fit's helper process (fastnn/runtime/cold_start.py).

Its benefit depends on one prediction: the argument types that
``train_batches`` calls the forward, backward and update drivers with. A
wrong guess is not an error (this process compiles what is missing), only a
lost speed-up, so it is checked here directly: after a fit, each predicted
signature must be one the drivers were compiled for.
"""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import early, early_tmp

import fastnn
from fastnn.runtime import cold_start
from fastnn.kernels import train as K


# Read-only inputs reach the drivers as writable views (validation.kernel_array):
# the same signatures; float32 only, the prediction does not depend on the dtype.
@pytest.mark.parametrize("dtype,read_only", [("float32", False), ("float64", False),
                                             ("float32", True)])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_predicted_signatures_are_the_ones_training_compiles(monkeypatch, dtype, sparse,
                                                             shuffle, read_only):
    seen = []
    original = cold_start.assist
    monkeypatch.setattr(cold_start, "assist",
                        lambda trainer, opt, state: seen.append(
                            cold_start.signatures(trainer, opt, state)) or original(
                                trainer, opt, state))
    rng = np.random.default_rng(0)
    x = rng.random((60, 9)).astype(dtype)
    if sparse:
        x[rng.random(x.shape) < 0.9] = 0
    if read_only:
        x.setflags(write=False)
    y = rng.integers(0, 3, 60)
    net = fastnn.Network([9, 7, 3], seed=0, dtype=dtype)
    net.fit(x, y, epochs=1, batch_size=16, shuffle=shuffle)
    (sigs,) = seen
    for name, sig in sigs.items():
        assert compiled_or_cached(getattr(K, name), sig), (name, sig)


def compiled_or_cached(disp, sig):
    """Compiled here, or in the disk cache (e.g. loaded with a caller: then
    only the index knows the callee's signatures); strict, unlike
    cold_start.is_cached, which answers True when it cannot tell."""
    cache = disp._cache
    return (sig in disp.overloads
            or cache._index_key(sig, disp.targetctx.codegen()) in cache._cache_file._load_index())


def test_no_helper_without_a_cache_or_when_disabled(monkeypatch):
    monkeypatch.setenv("FASTNN_COLD_ASSIST", "0")
    assert not cold_start._enabled()
    monkeypatch.delenv("FASTNN_COLD_ASSIST")
    monkeypatch.setattr(cold_start._config, "CACHE", False)
    assert not cold_start._enabled()


# A subprocess's first fit: records the functions compiled in it.
FIRST_FIT = r"""
import sys, numpy as np
from numba.core import event
compiled = []
class Rec(event.Listener):
    def on_start(self, ev):
        compiled.append(getattr(ev.data["dispatcher"], "py_func", None).__name__)
    def on_end(self, ev):
        pass
event.register("numba:compile", Rec())
import fastnn
from fastnn.runtime import cold_start
rng = np.random.default_rng(0)
x = rng.random((64, 5)).astype(np.float32)
y = rng.integers(0, 3, 64)
net = fastnn.Network([5, 8, 3], seed=0)
h = net.fit(x, y, epochs=2, batch_size=16, verbose=False)
"""
COLD = FIRST_FIT + r"""
print(repr((h["loss"], sorted(set(compiled)))))
"""


@early("test_a_cold_fit_takes_the_backward_from_the_helper_and_trains_the_same")
def _cold_fit():
    # An empty cache of its own: everything compiles, in two processes.
    env = dict(os.environ, NUMBA_CACHE_DIR=early_tmp("cold-"))
    return subprocess.run([sys.executable, "-c", COLD], env=env, capture_output=True,
                          text=True, timeout=900)


def test_a_cold_fit_takes_the_backward_from_the_helper_and_trains_the_same():
    """Empty cache: the helper's share (the forward pass) is compiled by the
    helper (this process loads it from the cache), this process compiles
    its own share, and the fit's result equals an in-process one."""
    out = _cold_fit.result()
    assert out.returncode == 0, out.stderr[-2000:]
    loss, compiled_here = eval(out.stdout.strip().splitlines()[-1])
    assert not set(cold_start.HELPER) & set(compiled_here), compiled_here
    assert set(cold_start.MAIN) <= set(compiled_here)
    rng = np.random.default_rng(0)
    x = rng.random((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    h = fastnn.Network([5, 8, 3], seed=0).fit(x, y, epochs=2, batch_size=16, verbose=False)
    np.testing.assert_allclose(loss, h["loss"], rtol=1e-6)


def test_the_helper_rejects_a_malformed_request(tmp_path):
    proc = subprocess.run(cold_start.helper_command(), input=b"not a pickle",
                          capture_output=True, timeout=300,
                          env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path)))
    assert proc.returncode != 0


BACKGROUND = FIRST_FIT + r"""
p = net.predict_proba(x)
helpers = set(cold_start._asked.values())
for helper in helpers:  # what they compile is tested below, with a small kernel
    helper.kill()
print(repr((h["loss"], p.sum(axis=0).tolist(), sorted(set(compiled)), len(helpers))))
"""


def test_a_cold_fit_runs_on_numpy_at_once_while_a_helper_compiles(tmp_path):
    """Empty cache, background compile on (the default): the fit and the
    predict run on the NumPy engine at once (nothing of fastnn compiled in
    this process, one helper started for each), the notice says so, and the
    results equal a compiled fit's to rounding."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), FASTNN_BACKGROUND_COMPILE="1")
    out = subprocess.run([sys.executable, "-c", BACKGROUND], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    loss, psum, compiled_here, n_helpers = eval(out.stdout.strip().splitlines()[-1])
    assert compiled_here == [] and n_helpers == 1, (compiled_here, n_helpers)
    assert "in the background" in out.stderr
    rng = np.random.default_rng(0)
    x = rng.random((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    net = fastnn.Network([5, 8, 3], seed=0)
    h = net.fit(x, y, epochs=2, batch_size=16, verbose=False)
    np.testing.assert_allclose(loss, h["loss"], rtol=1e-5)
    np.testing.assert_allclose(psum, net.predict_proba(x).sum(axis=0), rtol=1e-5)


def test_a_background_helper_leaves_the_kernels_in_the_cache(tmp_path):
    """The helper itself (a small kernel stands in for the drivers): what it
    is asked for is in the cache afterwards, and a second helper asked for
    the same waits for the first and loads it."""
    from numba import typeof

    from fastnn.kernels import sparse

    rowhash = np.arange(5, dtype=np.uint64)
    sig = (typeof(rowhash),)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), FASTNN_BACKGROUND_COMPILE="1")
    payload = pickle.dumps({"background": [("sparse.fingerprint", sig)]})
    procs = [subprocess.Popen(cold_start.helper_command(), stdin=subprocess.PIPE, env=env)
             for _ in range(2)]
    for p in procs:
        p.communicate(payload, timeout=300)
        assert p.returncode == 0
    check = ("import numpy as np; from numba import typeof; from fastnn.runtime import cold_start; "
             "from fastnn.kernels import sparse; "
             "d = sparse.fingerprint; s = (typeof(np.arange(5, dtype=np.uint64)),); "
             "print(d._cache._index_key(s, d.targetctx.codegen()) "
             "in d._cache._cache_file._load_index())")
    # Run from another directory, as the helper may be: the same cache.
    out = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.stdout.strip() == "True", out.stderr[-2000:]
    assert list(tmp_path.rglob("fastnn-compile.lock"))
    assert sparse.fingerprint(rowhash) == sparse.fingerprint(rowhash.copy())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sparse", [False, True])
def test_a_background_compile_predicts_the_calls_after_training(dtype, sparse):
    """The signatures the helper compiles after training's (validation and
    predict on dense rows) are the ones those calls then use."""
    rng = np.random.default_rng(0)
    x = rng.random((60, 9)).astype(dtype)
    if sparse:
        x[rng.random(x.shape) < 0.9] = 0
    y = rng.integers(0, 3, 60)
    net = fastnn.Network([9, 7, 3], seed=0, dtype=dtype)
    X = net.check_x(x)
    trainer = net.trainer(X, *net.check_y(y, 60), 16, True)
    assert trainer.sparse == sparse
    net.fit(x, y, epochs=1, batch_size=16, validation_split=0.3)
    net.predict_proba(x)
    for name, args in trainer._next_calls():
        disp = getattr(K, name)
        sig = tuple(disp.typeof_pyval(a) for a in args)
        assert compiled_or_cached(disp, sig), name


class FakeHelper:
    def __init__(self, code):
        self.code = code

    def poll(self):
        return self.code


def test_a_failing_helper_is_retried_once_then_this_process_compiles(monkeypatch):
    monkeypatch.setenv("FASTNN_BACKGROUND_COMPILE", "1")
    monkeypatch.setattr(cold_start, "is_cached", lambda disp, sig: False)
    monkeypatch.setattr(cold_start, "_known", set())
    monkeypatch.setattr(cold_start, "_asked", {})
    monkeypatch.setattr(fastnn.runtime.compile_notice, "_background", {})
    started = []
    monkeypatch.setattr(cold_start, "_start_helper",
                        lambda keys: started.append(keys) or FakeHelper(None))
    # Argument types epoch_begin is never compiled for (int32 row ids).
    args = (np.zeros(4, np.int32), np.zeros(1, np.uint64), True, None, False, 2)
    calls = [("epoch_begin", args)]
    assert not cold_start.ready(calls)  # a helper starts
    assert not cold_start.ready(calls)  # still running
    assert len(started) == 1
    cold_start._asked[started[0][0]].code = 1  # it failed: one more try
    assert not cold_start.ready(calls) and len(started) == 2
    cold_start._asked[started[0][0]].code = 1  # failed again: compile here
    assert cold_start.ready(calls)
    monkeypatch.setenv("FASTNN_BACKGROUND_COMPILE", "0")
    assert cold_start.ready([("epoch_begin", ("not", "typed"))])
