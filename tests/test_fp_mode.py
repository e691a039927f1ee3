"""Denormals flushed to zero while the engine runs a kernel, on every
thread of a parallel region, and IEEE denormals everywhere else
(fastnn/kernels/intrinsics.py, "Floating-point mode").

The probe: values of 1e-20 multiplied make 1e-40, a float32 denormal; 64
of them sum to 6.4e-39, still one. Flushed, each product is 0."""
import os
import platform
import subprocess
import sys

import numba
import numpy as np
import pytest
from numba import prange

import fastnn
from fastnn.kernels import matmul as mm
from fastnn.kernels.intrinsics import flush_denormals, restore_fp_mode

pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"),
    reason="the floating-point mode is set on x86 only")

TINY = np.float32(1e-20)
K = 64
DENORMAL_SUM = np.float32(K * 1e-40)


def _probe(rows=512, cols=256):
    A = np.full((rows, K), TINY, np.float32)
    B = np.full((K, cols), TINY, np.float32)
    return A, B, np.empty((rows, cols), np.float32)


def _product_on_the_pool():
    """A @ B of the probe on the parallel tiles (both threads' tasks)."""
    A, B, C = _probe()
    assert A.shape[0] * K * B.shape[1] > mm.SERIAL_MAX_MACS  # a parallel region
    mm.gemm_nn(A, B, C)
    return C


@numba.njit(parallel=True, cache=False)
def _user_parallel_products(a, b):
    out = np.empty(64, np.float32)
    for i in prange(64):
        out[i] = a[i] * b[i]
    return out


def _ieee_everywhere():
    """Denormals as IEEE has them on this thread, in a user's parallel
    region, and in the kernels called directly."""
    assert np.float32(2e-39) * np.float32(1.0) == np.float32(2e-39)
    a = np.full(64, TINY, np.float32)
    assert np.all(_user_parallel_products(a, a) > 0)
    C = _product_on_the_pool()
    np.testing.assert_allclose(C, DENORMAL_SUM, rtol=1e-3)


def test_flush_denormals_then_restore_on_this_thread():
    _ieee_everywhere()
    mode = flush_denormals()
    try:
        assert np.float32(2e-39) * np.float32(1.0) == 0
    finally:
        restore_fp_mode(mode)
    _ieee_everywhere()


def test_a_parallel_region_runs_in_its_callers_mode():
    # Every task, whichever thread ran it, flushed: all zeros, and after
    # the region the pool's threads are back in their own mode.
    assert numba.get_num_threads() >= 1
    mode = flush_denormals()
    try:
        C = _product_on_the_pool()
    finally:
        restore_fp_mode(mode)
    assert not np.any(C)
    _ieee_everywhere()


def test_the_engine_flushes_in_its_calls_only(monkeypatch):
    monkeypatch.setenv("FASTNN_BACKEND", "compiled")
    net = fastnn.Network([K, 256], output="identity", seed=0)
    net.weights[0][...] = TINY
    net.biases[0][...] = 0
    x, _, _ = _probe(rows=600)
    assert not np.any(net.predict(x))
    _ieee_everywhere()
    # A fit goes through the same call; its gradient is exactly 0 here.
    net.fit(x, np.zeros((600, 256), np.float32), epochs=1, batch_size=100, lr=0.1)
    assert not np.any(net.predict(x))
    _ieee_everywhere()

    monkeypatch.setenv("FASTNN_BACKEND", "numpy")
    np.testing.assert_allclose(net.predict(x), DENORMAL_SUM, rtol=1e-3)


# (The user's function is defined after the Network, which loads the
# kernels: a Numba function defined before that fixes Numba's code generator
# without fastnn's 512-bit setting, and the kernels then compile afresh for
# it instead of loading the suite's cache: ~80 s of a cold CI run.)
_FIRST_REGION_IN_A_CALL = """
import numpy as np, numba
from numba import prange
import fastnn

net = fastnn.Network([64, 256], output="identity", seed=0)

@numba.njit(parallel=True, cache=False)
def products(a):
    out = np.empty(64, np.float32)
    for i in prange(64):
        out[i] = a[i] * a[i]
    return out

net.weights[0][...] = 1e-20
assert not np.any(net.predict(np.full((600, 64), 1e-20, np.float32)))
tiny = np.full(64, 1e-20, np.float32)
print(int(np.count_nonzero(products(tiny) == 0)))
"""


def test_pool_threads_started_by_a_flushed_call_keep_ieee_mode():
    # A new thread starts in the mode of the thread that starts it: had the
    # engine's call started the pool (its first region) with denormals
    # flushed, the pool threads would keep flushing them in user code.
    env = dict(os.environ, FASTNN_BACKEND="compiled")
    out = subprocess.run([sys.executable, "-c", _FIRST_REGION_IN_A_CALL], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "0"
