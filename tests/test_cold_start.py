"""The cold first fit's helper process (fastnn/cold_start.py).

Its benefit depends on one prediction: the argument types that
``train_batches`` calls the forward, backward and update drivers with. A
wrong guess is not an error (this process compiles what is missing), only a
lost speed-up, so it is checked here directly: after a fit, each predicted
signature must be one the drivers were compiled for.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import cold_start
from fastnn.kernels import train as K


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("read_only", [False, True])
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
        disp = getattr(K, name)
        # Compiled here, or loaded with train_batches from the disk cache
        # (then only its index knows the callee's signatures).
        cache = disp._cache
        index = cache._cache_file._load_index()
        assert (sig in disp.overloads
                or cache._index_key(sig, disp.targetctx.codegen()) in index), (name, sig)


def test_no_helper_without_a_cache_or_when_disabled(monkeypatch):
    monkeypatch.setenv("FASTNN_COLD_ASSIST", "0")
    assert not cold_start._enabled()
    monkeypatch.delenv("FASTNN_COLD_ASSIST")
    monkeypatch.setattr(cold_start._config, "CACHE", False)
    assert not cold_start._enabled()


COLD = r"""
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
rng = np.random.default_rng(0)
x = rng.random((64, 5)).astype(np.float32)
y = rng.integers(0, 3, 64)
net = fastnn.Network([5, 8, 3], seed=0)
h = net.fit(x, y, epochs=2, batch_size=16, verbose=False)
print(repr((h["loss"], sorted(set(compiled)))))
"""


def test_a_cold_fit_takes_the_backward_from_the_helper_and_trains_the_same(tmp_path):
    """Empty cache: the helper's share (the forward pass) is compiled by the
    helper (this process loads it from the cache), this process compiles
    its own share, and the fit's result equals an in-process one."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", COLD], env=env, capture_output=True,
                         text=True, timeout=900)
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
    proc = subprocess.run([sys.executable, "-m", "fastnn.cold_start"], input=b"not a pickle",
                          capture_output=True, timeout=300,
                          env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path)))
    assert proc.returncode != 0


BACKGROUND = r"""
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
from fastnn import cold_start
rng = np.random.default_rng(0)
x = rng.random((64, 5)).astype(np.float32)
y = rng.integers(0, 3, 64)
net = fastnn.Network([5, 8, 3], seed=0)
h = net.fit(x, y, epochs=2, batch_size=16, verbose=False)
p = net.predict_proba(x)
assert cold_start.wait(timeout=600)
print(repr((h["loss"], p.sum(axis=0).tolist(), sorted(set(compiled)))))
"""


def test_a_cold_fit_runs_on_numpy_while_a_helper_fills_the_cache(tmp_path):
    """Empty cache, background compile on: the fit and the predict run on the
    NumPy engine at once (nothing of fastnn compiled in this process), the
    notice says so, the results equal a compiled fit's to rounding; the
    helper leaves the kernels in the cache, so the next process compiles
    nothing, prints nothing and trains like the warm in-process fit."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), FASTNN_BACKGROUND_COMPILE="1")
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", BACKGROUND], env=env, capture_output=True,
                             text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append((eval(out.stdout.strip().splitlines()[-1]), out.stderr))
    (cold, cold_err), (warm, warm_err) = runs
    assert cold[2] == [], cold[2]
    assert "in the background" in cold_err
    assert warm[2] == [] and "fastnn:" not in warm_err, (warm[2], warm_err)
    rng = np.random.default_rng(0)
    x = rng.random((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    net = fastnn.Network([5, 8, 3], seed=0)
    h = net.fit(x, y, epochs=2, batch_size=16, verbose=False)
    p = net.predict_proba(x).sum(axis=0)
    np.testing.assert_allclose(cold[0], h["loss"], rtol=1e-5)
    np.testing.assert_allclose(cold[1], p, rtol=1e-5)
    assert warm[0] == h["loss"] and np.allclose(warm[1], p, rtol=1e-6)


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
    monkeypatch.setattr(fastnn.compile_notice, "_background", {})
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
