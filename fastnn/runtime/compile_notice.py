"""One line on stderr when a first run has to compile kernels.

A cold start compiles for tens of seconds; without a word it looks like a
hang. When fastnn's kernels have been compiling for ``DELAY`` seconds this
prints ``fastnn: compiling kernels for this CPU (first run only) ...`` and,
when the work they were compiled for is under way (:func:`done`, called
by the training loop and the predict/evaluate drivers), ``fastnn: compiled
in N s``. Nothing is printed on a warm cache (kernels are loaded, not
compiled). Silenced by ``FASTNN_QUIET=1``, :func:`enable` ``(False)`` or
the command line's ``--quiet``.
"""
import contextlib
import os
import sys
import threading
import time

DELAY = 1.0
_enabled = [os.environ.get("FASTNN_QUIET", "0") in ("", "0")]
_lock = threading.Lock()
_burst = {}  # the compiles since the last done(): t0, timer, printed
compiles = [0]  # compilations started in this process (any function)


def enable(on=True):
    """Turn the compile notice on or off (process-wide)."""
    _enabled[0] = bool(on)


@contextlib.contextmanager
def silenced():
    """No notice for the compiles inside (helpers of a report, not the
    kernels a user waits for)."""
    was = _enabled[0]
    _enabled[0] = False
    try:
        yield
    finally:
        _enabled[0] = was


def _announce(burst):
    with _lock:
        if _burst is not burst.get("owner") or not burst.get("open"):
            return
        burst["printed"] = True
    sys.stderr.write("fastnn: compiling kernels for this CPU (first run only) ...\n")
    sys.stderr.flush()


def done():
    """The compiled work has started: close the notice (print the time if
    the first line was printed)."""
    if not _burst.get("open"):
        return
    with _lock:
        _burst["open"] = False
        _burst["timer"].cancel()
        printed = _burst.get("printed")
    if printed:
        sys.stderr.write(f"fastnn: compiled in {time.perf_counter() - _burst['t0']:.0f} s\n")
        sys.stderr.flush()


def install():
    from numba.core import event

    class Notice(event.Listener):
        def on_start(self, ev):
            compiles[0] += 1
            if _burst.get("open") or not _enabled[0]:
                return
            func = getattr((ev.data or {}).get("dispatcher"), "py_func", None)
            if not getattr(func, "__module__", "").startswith("fastnn."):
                return
            with _lock:
                _burst.clear()
                _burst.update(open=True, printed=False, t0=time.perf_counter(), owner=_burst)
                _burst["timer"] = threading.Timer(DELAY, _announce, (_burst,))
                _burst["timer"].daemon = True
                _burst["timer"].start()

        def on_end(self, ev):
            pass

    event.register("numba:compile", Notice())


_background = {}  # t0 of the first background compile this process asked for


def background_started():
    """A helper process compiles kernels while NumPy runs the work (see
    :func:`fastnn.runtime.cold_start.ready`): say so once per process."""
    if _background:
        return
    _background["t0"] = time.perf_counter()
    if _enabled[0]:
        sys.stderr.write("fastnn: compiling kernels for this CPU in the background (first run "
                         "only); running on NumPy meanwhile ...\n")
        sys.stderr.flush()


def background_abandoned():
    """The helper's kernels will not come (the cache cannot take them; that
    was reported): this process compiles them, without a "ready" line."""
    _background["ready"] = True


def background_ready():
    """The compiled kernels took over from NumPy: say when, once."""
    if not _background or _background.get("ready"):
        return
    _background["ready"] = True
    if _enabled[0]:
        sys.stderr.write(f"fastnn: compiled kernels ready after "
                         f"{time.perf_counter() - _background['t0']:.0f} s; using them\n")
        sys.stderr.flush()
