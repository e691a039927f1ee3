"""How many threads a training chunk uses when the CPU is shared.

Numba's parallel regions are fork-join: a region ends when every thread of
the pool has done its share. Alone on the machine a join costs about a
microsecond; when another process (a second fit, ``pytest -n 2``, a Dask
worker, a busy loop) holds one of the cores, a join waits for a thread that
is not running, and OpenMP's spin-waiting threads burn the time slices the
others need. Measured on 2 cores (``bench/shared_cpu.py``, classic epoch on
20k rows): alone 0.062 s; two processes at once 9.3 s each (150x); beside a
CPU hog 0.36 s (5.9x). OpenMP's passive wait policy fixed the pair but
slowed the lone run 2.4x; a shorter spin count (``GOMP_SPINCOUNT``) left it
at 9x.

So the engine measures instead of guessing: it times its chunks of batches
on the user's thread count and, every few seconds, half a chunk on a single
thread (the calling thread: no region to join), and runs on whichever is
faster per row; a chunk much slower than the other choice's rate switches
at once. On one thread it re-tries the pool after 0.5 s, doubling up to
8 s while the pool keeps losing, so a shared run notices soon after the
other process is gone, and the lone run pays half a chunk every 8 s.
``FASTNN_ADAPTIVE_THREADS=0`` turns it off; a user's own thread count
(``fastnn.set_num_threads``, ``NUMBA_NUM_THREADS``) is the parallel choice,
and 1 thread means nothing to choose.
"""
import contextlib
import os
import threading
import time

import numba

ENABLED = os.environ.get("FASTNN_ADAPTIVE_THREADS", "1") != "0"
SERIAL_PROBE = 8.0   # s between probes of 1 thread while parallel wins
FIRST_PROBE = 0.5    # s before re-trying the pool while 1 thread wins ...
MAX_PROBE = 8.0      # ... doubling up to this while it keeps losing
SWITCH = 1.5         # switch at once when the current choice gets this much slower
SMOOTHING = 0.3      # weight of the newest measurement in the running rate


def start_pool():
    """Numba's thread pool, started (once) as fastnn starts it, before a
    thread count is read or a parallel kernel runs: see
    :func:`fastnn._config.start_threads`."""
    if not _pool_started:
        from .. import _config

        _config.start_threads()
        _pool_started.append(True)


_pool_started = []


class ThreadChooser:
    """Per-process state: the measured seconds per row of each choice.

    Parallel (the user's thread count) is measured on whole chunks, after
    one unmeasured batch that wakes the pool (its threads fall asleep while
    one thread works, and a team-size change makes the next region slow, so
    a one-batch probe overstates the pool's cost by more than half). One thread
    is measured on half a chunk."""

    def __init__(self):
        self.rate = {}           # threads -> seconds per row (running mean)
        self.current = None
        self.interval = FIRST_PROBE
        self.last_probe = time.perf_counter()

    def pick(self):
        """(threads for the chunk, threads to probe first or None)."""
        start_pool()
        n = numba.get_num_threads()
        if not ENABLED or n == 1:
            return n, None
        if self.current not in (n, 1):
            self.current = n
        other = 1 if self.current == n else n
        wait = SERIAL_PROBE if other == 1 else self.interval
        if other not in self.rate or time.perf_counter() - self.last_probe >= wait:
            return self.current, other
        return self.current, None

    def record(self, threads, rows, seconds, probe=False):
        r = seconds / max(rows, 1)
        old = self.rate.get(threads)
        # A probe replaces the old figure (conditions may have changed since);
        # the running choice's chunks are smoothed.
        self.rate[threads] = r if old is None or probe else (1 - SMOOTHING) * old + SMOOTHING * r
        others = [t for t in self.rate if t != threads]
        if old is None and not probe and others and r > self.rate[others[0]]:
            # The first figure of the running choice, and the probe was
            # faster: take it (no SWITCH margin; both were just measured).
            self.current = others[0]
            self.last_probe = time.perf_counter()
            return
        if probe:
            self.last_probe = time.perf_counter()
            if self.rate[threads] < self.rate.get(self.current, 0.0):
                self.current = threads          # the probe won: switch
                self.interval = FIRST_PROBE
            elif threads > 1:
                self.interval = min(MAX_PROBE, self.interval * 2)
        elif others and self.rate[threads] > SWITCH * self.rate[others[0]]:
            # The current choice got much slower (another process took a
            # core, or left it): take the other one now.
            self.current = others[0]
            self.last_probe = time.perf_counter()
            self.interval = FIRST_PROBE


_choosers = {}
_last = [ThreadChooser()]


def chooser_for(work):
    """The chooser of one kind of work (a hashable key: a network's shapes,
    its batch size and dtype, and whether a call runs chunks of batches or
    whole epochs): seconds per row of different work do not compare. (One
    per process had digits, after an iris fit, run on one thread: iris'
    figures said the pool lost, and the pool was not re-tried for 8 s.)
    Kept across fits of the same work."""
    c = _choosers.get(work)
    if c is None:
        if len(_choosers) >= 64:
            _choosers.clear()
        c = _choosers[work] = ThreadChooser()
    _last[0] = c
    return c


def preferred():
    """The thread count training last ran on (for predict/evaluate)."""
    start_pool()
    n = numba.get_num_threads()
    current = _last[0].current
    return current if ENABLED and current in (1, n) else n
_workqueue_lock = threading.Lock()


def serialized():
    """A lock around calls of parallel kernels where Numba's threading
    layer is ``workqueue`` (used where OpenMP and TBB are missing): it is
    not thread-safe, and concurrent regions from two Python threads abort
    the process ("Concurrent access has been detected"). A no-op with the
    OpenMP and TBB layers."""
    start_pool()
    try:
        layer = numba.threading_layer()
    except ValueError:  # FASTNN_PARALLEL=0: no pool
        layer = None
    return _workqueue_lock if layer == "workqueue" else contextlib.nullcontext()


_pool_threads_started = threading.local()


def start_pool_threads():
    """Start this thread's pool threads at full size, in this thread's
    floating-point mode, once per thread: run before a call that flushes
    denormals (``runtime.compiled._call``), whose first region would
    otherwise start them with denormals flushed for good."""
    if getattr(_pool_threads_started, "done", False):
        return
    from ..kernels.team import wake_pool

    start_pool()
    n = numba.config.NUMBA_NUM_THREADS
    run_with(n, wake_pool, n)
    _pool_threads_started.done = True


def run_with(threads, fn, *args):
    """``fn(*args)`` with ``threads`` Numba threads on this thread."""
    with serialized():
        previous = numba.get_num_threads()
        if threads == previous:
            return fn(*args)
        numba.set_num_threads(threads)
        try:
            return fn(*args)
        finally:
            numba.set_num_threads(previous)


# --- fork -------------------------------------------------------------------
# A child made by fork() of a process whose GNU OpenMP pool has started
# dies at its first parallel region ("fork() called from a process already
# using GNU OpenMP"), and a multiprocessing.Pool waiting for it hangs. Such
# a child runs the NumPy backend instead (engine.backend.choose asks here).
_forked_after_pool = [False]


def _after_fork_in_child():
    try:
        layer = numba.threading_layer()
    except ValueError:  # the parent never started a pool: the child may
        return
    if layer == "omp":
        _forked_after_pool[0] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def pool_unusable():
    """Whether this process is a fork of one whose OpenMP pool had started."""
    return _forked_after_pool[0]
