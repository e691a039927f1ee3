"""Compile the kernels ahead of time, several configurations at once.

``python -m fastnn compile`` (see :func:`main`) runs, for each selected
dtype, a tiny version of everything a process can ask the kernels for:
training (stochastic solvers and the L-BFGS objective), ``partial_fit``,
``evaluate`` and ``predict``, on dense, mostly-zero and scipy CSR inputs.
It compiles them in this process's children (one per core, no background
helpers) and fills the on-disk kernel cache; later processes load the
machine code instead of compiling it. It then checks the cache from a
fresh process and returns only when every kernel those runs use loads from
it, or says which do not. A Docker image does it once at build time::

    RUN python -m fastnn compile --all

What a configuration must cover: the compiled drivers take the activation,
the loss head, the optimizer and the dense/sparse first layer as run-time
values, so one configuration per dtype compiles everything a fit of that
dtype can run (read-only inputs reach the kernels as writable views of the
same memory: ``validation.kernel_array``).
"""
import importlib.machinery
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

DTYPES = ("float32", "float64")


def _exercise(dtype):
    """Every kind of call into the kernels, once, with ``dtype``."""
    import numpy as np

    from ..engine import training
    from ..engine.network import Network
    from ..kernels.sparse import fingerprint, scan_rows

    rng = np.random.default_rng(0)
    dense = rng.random((64, 8))
    mostly_zero = dense * (rng.random((64, 8)) < 0.1)  # takes the sparse first-layer path
    y = rng.integers(0, 3, 64)
    # Inputs above validation.NUMPY_SCAN_MAX values are scanned by a kernel.
    rowhash = np.empty(64, np.uint64)
    scan_rows(dense.astype(dtype), np.empty(64, np.int64), rowhash)
    fingerprint(rowhash)
    inputs = [dense, mostly_zero]
    try:
        from scipy import sparse
        inputs.append(sparse.csr_matrix(mostly_zero))
    except ImportError:  # scipy is optional: no CSR inputs without it
        pass
    for x in inputs:
        x = x.astype(dtype)
        net = Network([8, 5, 3], seed=0, dtype=dtype)
        net.fit(x, y, epochs=1, batch_size=16, validation_split=0.25)
        net.partial_fit(x, y, batch_size=16)
        net.evaluate(x, y)
        net.predict_proba(x)
        X = net._check_x(x.toarray() if hasattr(x, "toarray") else x)  # as the estimators do
        objective = training.full_batch_objective(net, X, *net._check_y(y, X.shape[0]))
        objective(net.theta.astype(np.float64))


def _compiled_here():
    """Start recording which fastnn kernels this process compiles (not
    loads); returns the list it fills."""
    from numba.core import event

    names = []

    class Recorder(event.Listener):
        def on_start(self, ev):
            func = getattr((ev.data or {}).get("dispatcher"), "py_func", None)
            module = getattr(func, "__module__", "")
            if module.startswith("fastnn."):
                names.append(f"{module.rsplit('.', 1)[-1]}.{func.__name__}")

        def on_end(self, ev):
            pass

    event.register("numba:compile", Recorder())
    return names


def _in_process():
    # This process compiles (a background helper would compile later, and
    # the run would end before the cache is full) on one core (the pool
    # runs one configuration per core).
    os.environ.update(FASTNN_BACKEND="compiled", FASTNN_BACKGROUND_COMPILE="0",
                      FASTNN_COLD_ASSIST="0")
    from . import compile_notice

    compile_notice.enable(False)


def compile_configuration(dtype):
    """Compile what ``dtype``'s configuration runs; returns (seconds, the
    cache write error or None)."""
    from . import kernel_cache

    _in_process()
    t0 = time.perf_counter()
    _exercise(dtype)
    error = kernel_cache.write_errors[0] if kernel_cache.write_errors else None
    return time.perf_counter() - t0, error


def not_cached(dtype):
    """The kernels ``dtype``'s configuration had to compile in this (fresh)
    process: what the cache lacks."""
    _in_process()
    names = _compiled_here()
    _exercise(dtype)
    return sorted(set(names))


def installed_elsewhere():
    """When ``python -m fastnn`` imported a source checkout because it sits
    in the working directory, the installed fastnn's package directory
    (whose kernels the user's programs load); else None."""
    from .kernel_cache import PACKAGE_DIR

    first = os.path.realpath(sys.path[0] or os.getcwd()) if sys.path else None
    if first != os.path.realpath(PACKAGE_DIR.parent):
        return None
    spec = importlib.machinery.PathFinder.find_spec("fastnn", sys.path[1:])
    if spec is None or not spec.submodule_search_locations:
        return None
    other = os.path.realpath(list(spec.submodule_search_locations)[0])
    return None if other == os.path.realpath(PACKAGE_DIR) else other


def main(dtypes=DTYPES, jobs=None, out=None, argv=None):
    """Compile each dtype's configuration in a process pool, then check the
    cache from a fresh process; prints one line per step. Returns 0 when
    the cache holds every kernel, 1 (after naming what is missing) if not."""
    from . import cold_start

    out = out or sys.stdout
    other = installed_elsewhere()
    if other is not None and argv is not None:
        print(f"fastnn compile: the working directory holds a source checkout of fastnn; "
              f"compiling the installed package at {other} instead", file=out, flush=True)
        return subprocess.call([sys.executable, "-m", "fastnn", *argv],
                               cwd=os.path.dirname(other))
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(dtypes)))
    t0 = time.perf_counter()
    path = cold_start.cache_dir()
    lock = None
    try:
        lock = cold_start.claim(path)
        if lock is None:
            print(f"fastnn compile: waiting for the compile helper at work on {path} ...",
                  file=out, flush=True)
            lock = cold_start.claim(path, wait=True)
    except OSError as e:
        print(f"fastnn compile: cannot lock the kernel cache at {path} ({e.strerror}); "
              f"compiling anyway", file=out, flush=True)
    try:
        return _compile_and_check(dtypes, jobs, out, path, t0)
    finally:
        if lock is not None and lock != cold_start.NO_LOCK:
            os.close(lock)


def _compile_and_check(dtypes, jobs, out, path, t0):
    print(f"fastnn compile: {len(dtypes)} configuration(s) on {jobs} process(es) into {path} ...",
          file=out, flush=True)
    # spawn, not fork: a forked child of a process whose OpenMP threads run
    # is killed by GNU OpenMP ("fork() called from a process already using").
    spawn = multiprocessing.get_context("spawn")
    errors = []
    with ProcessPoolExecutor(jobs, mp_context=spawn) as pool:
        futures = [(d, pool.submit(compile_configuration, d)) for d in dtypes]
        for dtype, future in futures:
            seconds, error = future.result()
            print(f"  {dtype}: {seconds:.1f} s", file=out, flush=True)
            if error is not None:
                errors.append(error)
    if errors:
        where, reason = errors[0]
        print(f"fastnn compile: cannot write the kernel cache at {where} ({reason}); "
              f"later processes will compile again", file=out)
        return 1
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:  # a fresh process loads them
        missing = {d: pool.submit(not_cached, d).result() for d in dtypes}
    lacking = {d: names for d, names in missing.items() if names}
    if lacking:
        for dtype, names in lacking.items():
            print(f"fastnn compile: not in the cache for {dtype}: {', '.join(names)}", file=out)
        return 1
    print(f"done in {time.perf_counter() - t0:.1f} s; the cache holds every kernel of "
          f"{', '.join(dtypes)}", file=out)
    return 0
