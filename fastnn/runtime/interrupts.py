"""Ctrl-C that is never lost, and sections that finish before it lands.

Python delivers SIGINT by raising ``KeyboardInterrupt`` in the main thread at
the next bytecode boundary. When that boundary is inside a ctypes callback --
LLVM calls back into llvmlite (``_raw_object_cache_notify``) while Numba
emits machine code -- ctypes cannot propagate the exception: it prints
"Exception ignored on calling ctypes callback function" and carries on, so
the compile finishes and training runs to the end as if the key had not been
pressed. (Seen on a cold ``fastnn train``: 70 s in, Ctrl-C was swallowed and
all 1000 epochs ran.)

The fix has two halves, neither of which replaces the user's SIGINT handler:

* ``sys.unraisablehook`` is chained: a ``KeyboardInterrupt`` that ctypes
  swallowed is recorded as *pending* (and its noisy traceback dropped);
* checkpoints re-raise a pending interrupt: the end of every Numba compile
  step (``numba:run_pass``, ``numba:compile`` and ``numba:llvm_lock`` events,
  a few milliseconds apart during a compile) and :func:`check`, which the
  training loop calls between compiled chunks of batches.

:func:`deferred` is the other direction: a section (writing the model file,
restoring a snapshot) that must complete; a SIGINT that arrives inside it is
raised as ``KeyboardInterrupt`` when the section ends.
"""
import contextlib
import signal
import sys
import threading

_pending = False
_installed = False


_kept = []


def keep_frames(exc):
    """Keep the frames of an interrupted run (``exc``'s traceback) alive for
    the rest of the process.

    Why: a Ctrl-C inside Numba's compile can land between an llvmlite call
    that hands a module to LLVM (``link_modules`` destroys its source) and
    the line that marks the Python object as no longer owning it. When the
    interrupted frames are freed, that object's finaliser disposes of the
    module a second time: a segfault (status -11 in test_interrupts, seen
    three times on a 2-core AMD EPYC VM; faulthandler showed
    ``ModuleRef.__del__`` -> ``_dispose`` as ``fastnn train`` left its
    ``except KeyboardInterrupt``). Kept, the frames are never freed: the CLI
    ends with ``os._exit``, a session keeps a few MB of one compile's
    objects."""
    if exc.__traceback__ is not None:
        _kept.append(exc.__traceback__)


def check():
    """Raise ``KeyboardInterrupt`` if one was swallowed since the last check."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt


def _unraisable_hook(previous):
    def hook(unraisable):
        global _pending
        if isinstance(unraisable.exc_value, KeyboardInterrupt) or (
                unraisable.exc_type is not None
                and issubclass(unraisable.exc_type, KeyboardInterrupt)):
            _pending = True
            return
        if _half_built_llvm_object(unraisable):
            return
        previous(unraisable)

    hook.fastnn_interrupts = True
    return hook


def _half_built_llvm_object(unraisable):
    # An interrupt that lands inside an llvmlite object's constructor leaves
    # an object without its handle; its finaliser then fails harmlessly with
    # "no attribute '_as_parameter_'": noise after a Ctrl-C, not an error.
    where = getattr(unraisable.object, "__qualname__", "")
    return (where.endswith("__del__") and isinstance(unraisable.exc_value, AttributeError)
            and "_as_parameter_" in str(unraisable.exc_value))


def install():
    """Chain the unraisable hook and register the compile checkpoints (once
    per process; called when fastnn is imported, before any compile)."""
    global _installed
    if _installed:
        return
    _installed = True
    if not getattr(sys.unraisablehook, "fastnn_interrupts", False):
        sys.unraisablehook = _unraisable_hook(sys.unraisablehook)
    from numba.core import event

    class _Checkpoint(event.Listener):
        def on_start(self, ev):
            pass

        def on_end(self, ev):
            # Compiles also run in user threads; the interrupt belongs to the
            # main thread (where Python delivers SIGINT).
            if _pending and threading.current_thread() is threading.main_thread():
                check()

    listener = _Checkpoint()
    for kind in ("numba:run_pass", "numba:compile", "numba:llvm_lock"):
        event.register(kind, listener)


@contextlib.contextmanager
def deferred():
    """Run the body to completion even if SIGINT arrives; raise the
    ``KeyboardInterrupt`` afterwards. Outside the main thread (where no
    signal handler can be set) the body just runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGINT)
    except (ValueError, TypeError):  # no signal support here
        yield
        return
    if previous in (signal.SIG_IGN, None):
        yield
        return
    received = []
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signal.SIGINT, None)  # the user's own handler decides
        else:
            raise KeyboardInterrupt
