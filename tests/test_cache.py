"""Kernels loaded back from Numba's on-disk cache behave like fresh ones.

Two bugs of this kind have bitten: a cached kernel calling a parallel one
before the thread pool was up ("Symbol not found: allocate_sched"), and a
recursive call cycle whose cached code segfaulted. Each run below is a new
process, so the second one (at least) loads every kernel from the cache.
"""
import os
import subprocess
import sys

import numpy as np

SCRIPT = r"""
import numpy as np, fastnn
rng = np.random.default_rng(0)
out = []
for layers, hidden, output, dtype, zeros in [
        ([20, 64, 5], "relu", "softmax", "float32", 0.0),
        ([30, 100, 50, 10], "tanh", "softmax", "float64", 0.8),
        ([7, 49, 3], "sigmoid", "sigmoid", "float32", 0.0),
        ([5, 3, 2], "identity", "identity", "float64", 0.0)]:
    x = rng.random((150, layers[0]))
    x[rng.random(x.shape) < zeros] = 0
    net = fastnn.Network(layers, hidden=hidden, output=output, seed=1, dtype=dtype)
    if output == "softmax":
        y = rng.integers(0, layers[-1], 150)
    else:
        y = rng.integers(0, 2, (150, layers[-1])).astype(float)
    h = net.fit(x, y, epochs=2, batch_size=32, lr=0.1, shuffle=True)
    out += h["loss"] + net.predict_proba(x[:3]).ravel().tolist()
print(repr(out))
"""


def test_cached_kernels_run_and_agree_with_fresh_ones():
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                           timeout=600) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    a, b = (np.array(eval(r.stdout)) for r in runs)
    assert a.shape == b.shape == (8 + 3 * (5 + 10 + 3 + 2),)
    # Equal up to rounding: a fresh compile may pick a different (1-ulp)
    # transcendental implementation than the cached machine code.
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)


def test_cache_stamp_depends_on_the_parallel_setting():
    """FASTNN_PARALLEL=0 must not load machine code compiled in parallel."""
    code = "from fastnn import _config; print(_config._kernel_source_stamp())"
    stamps = set()
    for parallel in ("0", "1"):
        env = dict(os.environ, FASTNN_PARALLEL=parallel)
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        stamps.add(out)
    assert len(stamps) == 2
