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
