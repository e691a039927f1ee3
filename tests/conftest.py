import os

# Tests check the compiled kernels, bit for bit where they compare runs: no
# NumPy engine standing in while a helper compiles (fastnn.runtime.cold_start.ready).
# test_cold_start.py turns it on where it tests it. Subprocesses inherit this.
os.environ.setdefault("FASTNN_BACKGROUND_COMPILE", "0")
# Subprocesses (`python -c`, `python -m fastnn`) import the fastnn this
# process imports, not a source checkout in the working directory: in CI the
# package is installed, and the checkout's copy caches its kernels in
# another directory (every subprocess compiled them again). Python >= 3.11.
os.environ.setdefault("PYTHONSAFEPATH", "1")
# The suite shares the CPU with its own compile helpers and early jobs
# (below): OpenMP threads that spin after each of the tests' many small
# parallel regions burn the core those processes need. Sleeping threads
# cost a test nothing but speed, which tests do not check (test_network.py
# and test_estimators.py alone: 26 -> 18 CPU seconds). Subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import signal
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest

# Tests send SIGINT to fastnn and expect Python's KeyboardInterrupt. A run
# started in the background by a non-interactive shell (`bash .ci/run &`,
# nohup) inherits SIGINT *ignored*, which Python and fastnn rightly respect,
# and every child inherits the ignore through exec: put Python's own handler
# back, so this process and its children (exec resets a handled signal to
# the default) behave as when started from a terminal. (Seen: a CI run
# started with `&` failed the six Ctrl-C tests.)
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

_precompile = []
# The environment before any test changed it: early jobs run their
# subprocesses in it (a module on the NumPy backend sets FASTNN_BACKEND for
# its duration, and an early job's thread may start a child meanwhile).
_START_ENV = dict(os.environ)
_SESSION_START = time.monotonic()


# ------------------------------------------------------------ two backends
# The behaviour tests (Network, estimators, CLI, Dask: modules marked
# ``both_backends``) run on each backend in one run: the compiled kernels
# and the NumPy backend that a first run trains on while they compile.
# ``pytest --backend numpy`` (or ``compiled``) runs one of them only, and
# then only the behaviour tests for numpy; the kernels' own (bit-for-bit)
# tests are compiled-only.
BACKENDS = ("compiled", "numpy")


def pytest_addoption(parser):
    parser.addoption("--backend", choices=("both",) + BACKENDS, default="both",
                     help="run the behaviour tests on this backend (default: both)")
    parser.addoption("--no-compile-helpers", action="store_true",
                     help="compile kernels in this process only, as the tests call them")
    parser.addoption("--first-of-each", action="store_true",
                     help="run each test function once, with its first parameters "
                          "(what the compile helpers run to compile the kernels tests call)")
    parser.addoption("--other-isa", action="store_true",
                     help="also run the kernels' tests on code built for another instruction "
                          "set (AVX2 on an AVX-512 host: minutes of compiling; CI runs it)")


def _backends(config):
    chosen = config.getoption("--backend")
    return BACKENDS if chosen == "both" else (chosen,)


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("both_backends"):
        if "fastnn_backend" not in metafunc.fixturenames:
            metafunc.fixturenames.append("fastnn_backend")
        # A test of the kernels themselves (marked ``kernels``: it calls them,
        # or compares them with the NumPy engine, directly) runs once.
        backends = (("compiled",) if metafunc.definition.get_closest_marker("kernels")
                    else _backends(metafunc.config))
        metafunc.parametrize("fastnn_backend", backends, indirect=True, scope="module")


def _backend_of(node):
    spec = getattr(node, "callspec", None)
    return spec.params.get("fastnn_backend") if spec is not None else None


@pytest.fixture(scope="module")
def fastnn_backend(request):
    """The backend this module's tests run on (FASTNN_BACKEND, which
    subprocesses and Dask workers started meanwhile inherit)."""
    from fastnn.engine.numpy_engine import one_blas_thread

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTNN_BACKEND", request.param)
        if request.param == "compiled":
            yield request.param
            return
        # NumPy's BLAS on one thread: beside the suite's compile helpers and
        # early jobs, OpenBLAS's spin-waiting threads slowed these tests
        # several-fold, for matrices of a few hundred rows.
        mp.setenv("OPENBLAS_NUM_THREADS", "1")
        with one_blas_thread():
            yield request.param


@pytest.fixture(autouse=True)
def _on_backend(request):
    """Sets up ``fastnn_backend`` for every ``both_backends`` test: a
    parametrized fixture that a test does not name is not set up by itself
    (so, before this, such a module's "numpy" tests ran on the default
    backend)."""
    if _backend_of(request.node) is not None:
        request.getfixturevalue("fastnn_backend")


def pytest_collection_finish(session):
    _start_precompile(session)
    _start_early_jobs(session)


def _start_precompile(session):
    """A whole-suite run on an empty cache spends most of its minutes
    compiling: start two helpers, one compiling every kernel of float32
    (``fastnn compile``'s calls), one of float64, while the tests that need
    no compiled kernels (the NumPy backend's) run first; the first test
    that needs them waits for the helpers (see ``pytest_runtest_setup``)
    rather than compiling the same kernels beside them. Each helper then
    runs every test function of ``DIRECT_KERNEL_TESTS`` once, in its dtype.
    On a warm cache the helpers only load and exit."""
    if (len(session.items) < 500 or os.environ.get("FASTNN_CACHE") == "0"
            or (os.cpu_count() or 1) < 2 or session.config.getoption("--no-compile-helpers")
            or not any(_needs_kernels(item) for item in session.items)):  # --backend numpy
        return
    # python_c: the fastnn the tests import (an installed package in CI,
    # whose cache directory differs from a source checkout's).
    from fastnn.runtime.cold_start import python_c

    here = os.path.dirname(os.path.abspath(__file__))
    for dtype in ("float32", "float64"):
        # Then the tests that call kernels directly, once each: they call
        # the matmul drivers and loss kernels with types of their own (not
        # training's), which this process would otherwise compile one after
        # another, on the cold run's critical path.
        direct = [os.path.join(here, name) for name in DIRECT_KERNEL_TESTS]
        args = ["-q", "-p", "no:cacheprovider", "--no-compile-helpers", "--first-of-each",
                "-k", f"{dtype} and not numpy", *direct]
        code = ("from fastnn.runtime.warmup import compile_configuration as c\n"
                f"c({dtype!r})\n"
                f"import pytest; pytest.main({args!r})")
        proc = subprocess.Popen(python_c(code), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=dict(os.environ, FASTNN_QUIET="1"))
        _precompile.append(proc)
        threading.Thread(target=_time_helper, args=(f"compile helper ({dtype})", proc),
                         daemon=True).start()


# Modules (or test functions) whose tests call kernels with types of their
# own: the compile helpers run each function of them once.
DIRECT_KERNEL_TESTS = ("test_matmul.py", "test_kernels.py",
                       "test_network.py::test_gradients_match_reference")


def _time_helper(name, proc):
    proc.wait()
    _helpers_ran[name] = (0.0, time.monotonic() - _SESSION_START, "helper")


def _needs_kernels(item):
    """Whether a test runs compiled kernels (all but the NumPy backend's)."""
    return _backend_of(item) != "numpy"


def pytest_runtest_setup(item):
    if _precompile and _needs_kernels(item):
        start = time.monotonic()
        for proc in _precompile:
            proc.wait()
        if not _helpers_waited:
            _helpers_waited.append((start - _SESSION_START, time.monotonic() - _SESSION_START))


_helpers_ran = {}
_helpers_waited = []  # (from, to): when the tests waited for the helpers


# ------------------------------------------------------------- early jobs
# A few tests check what only a process compiling from scratch can show (a
# cold fit with its helper, Ctrl-C during a compile, the AVX2 build): each
# is a subprocess busy for 15-200 s while pytest runs tests one at a time.
# Such a test declares its subprocess work as an early job: the job starts
# in a background thread once the compile helpers are done (if the test is
# selected), and the test checks its result when its turn comes. Same work
# and assertions; it just overlaps the rest of the suite.
_early = {}
_early_pool = []


class _EarlyJob:
    def __init__(self, fn, seconds):
        self.fn = fn
        self.seconds = seconds
        self.future = None
        self.lock = threading.Lock()
        self.ran = None  # (start, end) in seconds from the session's start, and where
        self.waited = None  # (from, to): when its test waited for it

    def _timed(self, where):
        start = time.monotonic()
        try:
            return self.fn()
        finally:
            self.ran = (start - _SESSION_START, time.monotonic() - _SESSION_START, where)

    def start(self, pool, before):
        with self.lock:
            if self.future is None:
                self.future = pool.submit(lambda: (before(), self._timed("early"))[1])

    def take(self, where):
        """Runs the job in this thread unless it has started; whether it
        ran here."""
        with self.lock:
            if not (self.future is None or self.future.cancel()):
                return False
            self.future = Future()
            self.future.set_running_or_notify_cancel()  # cancel() now fails
        try:
            self.future.set_result(self._timed(where))
        except BaseException as e:  # re-raised by result()
            self.future.set_exception(e)
            if not isinstance(e, Exception):
                raise  # Ctrl-C: now, not when this job's own test comes
        return True

    def result(self):
        """The job's return value. Its test comes after every test without
        a job, so the core those ran on is free: run the job now if it has
        not started (the test was selected on its own, or the job still
        waits its turn), and while it runs in the background, run the
        other jobs that still wait theirs."""
        start = time.monotonic()
        if not self.take("by its test") and not self.future.done():
            for job in sorted(_early.values(), key=lambda job: -job.seconds):
                if job is not self and job.future is not None:
                    job.take("by another job's test")
        result = self.future.result()
        if self.waited is None:
            self.waited = (start - _SESSION_START, time.monotonic() - _SESSION_START)
        return result


def pytest_terminal_summary(terminalreporter):
    """When each compile helper and early job ran, and when tests waited
    for them: a cold run's length is the tests' own time plus these waits."""
    ran = sorted([(job.ran, name) for name, job in _early.items() if job.ran]
                 + [(span, name) for name, span in _helpers_ran.items()])
    if ran:
        terminalreporter.section("compile helpers and early jobs "
                                 "(seconds from the session's start)")
        for (start, end, where), name in ran:
            terminalreporter.write_line(f"{start:6.0f} -> {end:6.0f} ({end - start:4.0f} s, "
                                        f"{where}) {name}")
        waits = sorted([(job.waited, name) for name, job in _early.items() if job.waited]
                       + [(span, "the compile helpers") for span in _helpers_waited])
        for (start, end), name in waits:
            terminalreporter.write_line(f"{start:6.0f} -> {end:6.0f} tests waited for {name}")


def early(test_name, seconds):
    """Decorator registering ``fn()`` as the early job of the test whose
    pytest item name is ``test_name`` (with its parameter id, if any);
    ``seconds``: about how long it runs on a cold 2-core machine (the
    longest start first)."""
    def register(fn):
        job = _EarlyJob(fn, seconds)
        _early[test_name] = job
        return job
    return register


def _keep(config, items, kept):
    """Deselect every item of ``items`` not in ``kept`` (in place)."""
    ids = {id(item) for item in kept}
    config.hook.pytest_deselected(items=[item for item in items if id(item) not in ids])
    items[:] = kept


@pytest.hookimpl(trylast=True)  # after -k and -m: --first-of-each keeps what they select
def pytest_collection_modifyitems(session, config, items):
    if "compiled" not in _backends(config):
        _keep(config, items, [item for item in items if _backend_of(item) == "numpy"])
    if config.getoption("--first-of-each"):
        seen, kept = set(), []
        for item in items:
            function = (item.path, getattr(item, "originalname", item.name))
            if function not in seen:
                seen.add(function)
                kept.append(item)
        _keep(config, items, kept)
    if not config.getoption("--other-isa"):
        # A cold compile of the kernels for another ISA would be a third of
        # the suite's cold run: CI runs these on their own (.ci/run).
        skip = pytest.mark.skip(reason="kernels for another ISA: run with --other-isa")
        for item in items:
            if item.get_closest_marker("other_isa"):
                item.add_marker(skip)
    # The NumPy backend's tests first (while the helpers compile), and the
    # tests that check an early job's result last (stable order otherwise):
    # by then their jobs have had the rest of the suite's time.
    items.sort(key=lambda item: (item.name in _early, _needs_kernels(item)))


def early_env(**changes):
    """The environment for an early job's subprocess: the session's, as it
    was before any test set a backend, with ``changes``."""
    return dict(_START_ENV, **changes)


def early_tmp(prefix):
    """A new directory for an early job's files (removed after the session)."""
    import tempfile

    if not _early_base:
        _early_base.append(tempfile.mkdtemp(prefix="fastnn-tests-"))
    return tempfile.mkdtemp(prefix=prefix, dir=_early_base[0])


_early_base = []


def _start_early_jobs(session):
    selected = {item.name for item in session.items if not item.get_closest_marker("skip")}
    jobs = sorted((job for name, job in _early.items() if name in selected),
                  key=lambda job: -job.seconds)
    if jobs:
        # One at a time, after the helpers: one core's worth, beside the
        # tests on the other. (Started beside the helpers, they slowed the
        # compile as much as they saved; two at a time, beside the tests,
        # NumPy's BLAS threads in the tests thrashed.) The longest first, so
        # that the jobs still waiting when the tests are done are short
        # ones, which the tests then run themselves (see _EarlyJob.result).
        pool = ThreadPoolExecutor(1, thread_name_prefix="early-job")
        _early_pool.append(pool)
        for job in jobs:
            job.start(pool, lambda: [proc.wait() for proc in _precompile])


def pytest_sessionfinish(session):
    for pool in _early_pool:
        pool.shutdown(wait=False, cancel_futures=True)
    if _early_base:
        import shutil

        shutil.rmtree(_early_base[0], ignore_errors=True)
    for proc in _precompile:
        if proc.poll() is None:
            proc.kill()
        proc.wait()

DTYPES = [np.float32, np.float64]
# Relative tolerances of the parity tests: float64 agrees with NumPy to
# rounding; float32 to what float32 accumulation allows.
RTOL = {np.float32: 1e-4, np.float64: 1e-10}


def assert_close(actual, expected, dtype, scale=None, what=""):
    """|actual - expected| <= rtol * scale elementwise, where ``scale`` is a
    magnitude of the computation (default: max(|expected|, 1))."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    if scale is None:
        scale = np.maximum(np.abs(expected), 1.0)
    err = np.abs(actual - expected)
    bad = ~(err <= RTOL[dtype] * scale)  # NaN counts as a mismatch
    assert not bad.any(), (f"{what}: max error {err.max():.3g} "
                           f"at {np.argwhere(bad)[0]} (actual {actual[tuple(np.argwhere(bad)[0])]})"
                           f" (rtol {RTOL[dtype]})")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
