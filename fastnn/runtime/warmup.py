"""Compile the kernels ahead of time, several configurations at once.

``python -m fastnn compile`` (see :func:`main`) runs a tiny training run,
``partial_fit``, ``evaluate`` and ``predict`` for each selected
configuration in a pool of processes (one per core), which fills the
on-disk kernel cache; later processes load the machine code instead of
compiling it. A Docker image does it once at build time::

    RUN python -m fastnn compile --all

What a configuration must cover: the compiled drivers take the activation,
the loss head, the optimizer and the dense/sparse first layer as run-time
values, so one configuration per dtype compiles everything a fit of that
dtype can run (read-only inputs reach the kernels as writable views of the
same memory: ``validation.kernel_array``).
"""
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

DTYPES = ("float32", "float64")


def compile_configuration(dtype):
    """Compile what training and prediction with ``dtype`` run; returns the
    seconds it took."""
    import numpy as np

    from . import compile_notice
    from ..engine.network import Network

    compile_notice.enable(False)
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    dense = rng.random((64, 8))
    sparse = dense * (rng.random((64, 8)) < 0.1)  # takes the sparse first-layer path
    y = rng.integers(0, 3, 64)
    # Inputs above validation.NUMPY_SCAN_MAX values are scanned by a kernel.
    from ..kernels.sparse import fingerprint, scan_rows

    rowhash = np.empty(64, np.uint64)
    scan_rows(dense.astype(dtype), np.empty(64, np.int64), rowhash)
    fingerprint(rowhash)
    for x in (dense, sparse):
        x = x.astype(dtype)
        net = Network([8, 5, 3], seed=0, dtype=dtype)
        net.fit(x, y, epochs=1, batch_size=16, validation_split=0.25)
        net.partial_fit(x, y, batch_size=16)
        net.evaluate(x, y)
        net.predict_proba(x)
    return time.perf_counter() - t0


def main(dtypes=DTYPES, jobs=None, out=None):
    """Compile each dtype's configuration in a process pool; prints one line
    per configuration. Returns 0."""
    import sys

    out = out or sys.stdout
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(dtypes)))
    t0 = time.perf_counter()
    print(f"fastnn compile: {len(dtypes)} configuration(s) on {jobs} process(es) ...",
          file=out, flush=True)
    # spawn, not fork: a forked child of a process whose OpenMP threads run
    # is killed by GNU OpenMP ("fork() called from a process already using").
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [(d, pool.submit(compile_configuration, d)) for d in dtypes]
        for dtype, future in futures:
            print(f"  {dtype}: {future.result():.1f} s", file=out, flush=True)
    print(f"done in {time.perf_counter() - t0:.1f} s; the kernels are cached", file=out)
    return 0
