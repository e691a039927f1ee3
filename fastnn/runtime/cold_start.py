"""What a first run does while the kernels are not compiled yet.

On an empty kernel cache Numba needs ~30 s (two cores) to ~40 s (one) to
compile the training drivers of one dtype (``python
bench/compile_profile.py``). Two ways to live with that:

1. **Default: run on NumPy while a helper compiles** (:func:`ready`, the
   second half of this file). A fit, evaluate or predict whose compiled
   driver is neither in memory nor in the disk cache runs on
   :mod:`fastnn.engine.numpy_engine` (the same math in NumPy, on the same argument
   bundles) while a helper interpreter compiles the driver, then the calls
   the work likely makes next, into the cache. A fit switches to the
   kernels at the first epoch that starts after they are there; later
   processes load them. Measured (2-core AVX-512 Xeon, empty cache, process
   start to fit end, medians of 3): classic ``Network([784,100,50,10]).fit``
   on 1000 MNIST rows 1.37 s (30.9 s compiling in-process), iris
   ``MLPClassifier(max_iter=50).fit`` 1.27 s (28.3 s). Results agree with a
   compiled run's to float rounding, not bit for bit.
2. ``FASTNN_BACKGROUND_COMPILE=0``: compile in this process, bit-identical
   to a warm run, on two cores (:func:`assist`): the forward pass
   (``network_forward`` and the kernels below it) and the update
   (``apply_update``) do not depend on the backward pass, so a helper
   compiles them into the cache while this process compiles the backward
   (the larger share); the training driver then loads the helper's share.
   Measured (classic 784-100-50-10 float32, 1000 rows): 38.5 s from import
   to the end of the fit without the helper, 33.5 s with it (the two
   shares have small kernels in common, and linking the training driver
   itself, ~7 s, can only start when both are done). Only when the cache
   is on, the machine has a second core and the backward is not cached;
   ``FASTNN_COLD_ASSIST=0`` turns it off.

Anything that goes wrong in a helper (it crashed, was killed, guessed a
type wrongly) costs nothing but time: this process then compiles what is
missing itself. A helper is a fresh interpreter (``python -m
fastnn.runtime.cold_start``), not a multiprocessing child: spawning would re-import
the user's script (running it again if it has no ``__main__`` guard), and
forking a process whose OpenMP threads have started is fatal with GNU
OpenMP.
"""
import os
import pickle
import subprocess
import sys

from .. import _config
from . import kernel_cache


# Who compiles what. Compiled alone: backward ~21 s, forward + update ~12 s
# (+ ~2 s to start the helper); the larger share stays here, so a helper
# that fails costs the smaller one.
HELPER = ("network_forward", "apply_update")
MAIN = ("network_backward",)


def python_c(code):
    """``python -c code`` that imports this very fastnn. Plain ``-c`` (or
    ``-m``) puts the working directory first on the path, and a source
    checkout there (CI runs from one, with the package installed) would
    shadow the installed package, whose kernels are cached in another
    directory: a helper's work then never reached this process (seen: the
    scan kernel compiled again in-process), and a benchmark's child timed
    another copy."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r})\n{code}"]


def helper_command():
    """The helper interpreter's command line (reads its job on stdin)."""
    return python_c("from fastnn.runtime.cold_start import _main; _main()")


def _enabled():
    return (_config.CACHE and (os.cpu_count() or 1) > 1
            and os.environ.get("FASTNN_COLD_ASSIST", "1") != "0")


def is_cached(dispatcher, sig):
    """Whether ``dispatcher`` has machine code for ``sig`` in memory or in
    its on-disk cache (without loading it: see ``kernel_cache.holds``).
    Uses Numba's cache internals;
    if they change, answers True (no helper: the safe side)."""
    if sig in dispatcher.overloads:
        return True
    try:
        cache = dispatcher._cache
        if not cache._enabled:
            return True
        key = cache._index_key(sig, dispatcher.targetctx.codegen())
        return kernel_cache.holds(cache._cache_file, key)
    except Exception:
        return True


def signatures(trainer, opt, state):
    """The argument types ``train_batches`` will call ``network_forward``,
    ``network_backward`` and ``apply_update`` with (Numba's typing of its
    body, written out: a batch of X is a slice of the gather buffer or of X
    itself, the row ids a slice of ``order``; both keep X's layout)."""
    from numba import typeof, types

    data = trainer.data
    source = trainer.bufs.x if data.shuffle else data.X
    x = typeof(source)
    if x.layout != "C":
        return None
    model, work, grad = typeof(trainer.model), typeof(trainer.work), typeof(trainer.grad)
    sp = typeof(trainer.sp)
    rows = typeof(data.order)
    drop = typeof(opt.dropout)
    return {
        "network_forward": (model, x, rows, sp, work, drop, types.uint64),
        "network_backward": (model, x, types.int64, sp, grad, work, types.int64, drop,
                             types.uint64),
        "apply_update": (model, grad, typeof(state), typeof(opt), types.float64),
    }


def assist(trainer, opt, state):
    """Before a fit's first epoch: if the backward pass would have to be
    compiled, compile it in a helper process while this one compiles the
    rest (see the module docstring). Returns when both are done."""
    if not _enabled() or background_enabled():
        # In the background mode the training driver was found compiled or
        # cached before this is called, and its callees with it (asking
        # again would repeat typing and cache-index reading on every fit).
        return
    from ..kernels import train as K

    try:
        sigs = signatures(trainer, opt, state)
    except Exception:  # an argument Numba cannot type: the call itself will say so
        return
    if sigs is None or is_cached(K.network_backward, sigs["network_backward"]):
        return
    helper_part = [n for n in HELPER if not is_cached(getattr(K, n), sigs[n])]
    env = dict(os.environ, FASTNN_QUIET="1", FASTNN_COLD_ASSIST="0")
    try:
        helper = subprocess.Popen(helper_command(),
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env=env)
        helper.stdin.write(pickle.dumps([(n, sigs[n]) for n in helper_part]))
        helper.stdin.close()
    except (OSError, pickle.PicklingError):
        return
    try:
        for name in MAIN:
            getattr(K, name).compile(sigs[name])
        helper.wait()
    finally:
        if helper.poll() is None:  # interrupted: the helper's work is not needed
            helper.kill()
            helper.wait()


# --- the default: NumPy while a helper compiles ------------------------------
# A background helper finishes its work even if this process ends first (it
# only writes the cache) and runs at a lower priority. One helper at a time
# compiles into a cache directory, machine-wide: the process that starts one
# takes the directory's lock file for it (the helper inherits the locked
# file), and a process that finds the lock taken starts none; it stays on
# NumPy until that helper is done, then loads what it compiled.

_known = set()    # (name, signature) compiled in memory or found in the cache
_asked = {}       # (name, signature) -> the helper process asked to compile it
_others = set()   # cache directories where another process's helper held the lock
LOCK_NAME = "fastnn-compile.lock"
NO_LOCK = -1      # where there is no flock (Windows): helpers do not wait for each other
CANNOT_WRITE = 3  # a helper's exit status: the cache cannot take its kernels


def background_enabled():
    return _config.CACHE and os.environ.get("FASTNN_BACKGROUND_COMPILE", "1") != "0"


def kernel(name):
    """The compiled function ``name``: ``"train_batches"`` (in
    :mod:`fastnn.kernels.train`) or ``"<module>.<function>"`` of another
    kernels module (``"sparse.scan_rows"``)."""
    import importlib

    module, _, func = name.rpartition(".")
    return getattr(importlib.import_module(f"fastnn.kernels.{module or 'train'}"), func)


def cache_dir():
    """The directory fastnn's kernels are cached in (all kernel modules
    share it: one folder)."""
    return kernel("train_batches")._cache._cache_path


def claim(path, wait=False):
    """Take the compile lock of the cache directory ``path`` (created if
    missing): an open file descriptor holding it, or None if another
    process holds it and ``wait`` is false; ``NO_LOCK`` where there is no
    flock. Raises OSError if the lock file cannot be opened."""
    try:
        import fcntl
    except ImportError:
        return NO_LOCK
    os.makedirs(path, exist_ok=True)
    fd = kernel_cache.open_lock_file(path, LOCK_NAME)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _missing(calls):
    """The (name, signature) of ``calls`` neither compiled nor cached; None
    if an argument cannot be typed (the call itself will say why)."""
    missing = []
    for name, args in calls:
        disp = kernel(name)
        try:
            sig = tuple(disp.typeof_pyval(a) for a in args)
        except Exception:
            return None
        key = (name, sig)
        if key in _known or sig in disp.overloads:
            continue
        if is_cached(disp, sig):
            _known.add(key)
            continue
        missing.append(key)
    return missing


def _compile_here(path, reason):
    """The cache cannot take kernels: say so once; this process compiles
    what it runs (in memory)."""
    from . import compile_notice, kernel_cache

    kernel_cache.cannot_write(path, reason)
    compile_notice.background_abandoned()
    return True


def ready(calls, memo=None, then=()):
    """Whether every ``(name, args)`` in ``calls`` can run
    ``kernel(name)(*args)`` without compiling in this process
    (compiled already, or in the disk cache). If not, makes sure a helper
    process compiles them, then the ``then`` calls this work will likely
    make next (e.g. predict after fit), and returns False: the caller runs
    :mod:`fastnn.engine.numpy_engine` meanwhile. True (compile here) when
    the background compile is off, when the cache cannot take kernels, or
    when a helper did not deliver them twice. ``memo``: a cheap key of the
    argument types (typing the arguments costs ~0.2 ms) under which a True
    answer is remembered."""
    from . import compile_notice, kernel_cache

    if memo in _known or not background_enabled():
        return True
    missing = _missing(calls)
    if not missing:
        if memo is not None and missing is not None:
            _known.add(memo)
        return True
    if kernel_cache.write_errors:
        return True  # reported: this process compiles
    helpers = [_asked.get(key) for key in missing]
    if any(h is not None and h.poll() is None for h in helpers):
        return False  # still compiling
    for h in helpers:
        if h is not None and h.returncode == CANNOT_WRITE:
            return _compile_here(cache_dir(), h.stdout.read().decode(errors="replace").strip()
                                 or "the helper could not write it")
    if any(h is not None and (h.returncode == 0 or h.retried) for h in helpers):
        # Done but not in the cache, or failed twice: compile here.
        return True
    path = cache_dir()
    problem = kernel_cache.unusable(path)
    if problem:
        return _compile_here(path, problem)
    try:
        lock = claim(path)
    except OSError as e:
        return _compile_here(path, e.strerror or str(e))
    if lock is None:  # another process's helper (or `fastnn compile`) is at work
        _others.add(path)
        compile_notice.background_started()
        return False
    extra = [key for key in (_missing(then) or []) if key not in missing]
    try:
        helper = _start_helper(missing + extra, lock)
    except (OSError, pickle.PicklingError):
        return True
    finally:
        if lock != NO_LOCK:
            os.close(lock)  # the helper's copy keeps the lock
    helper.retried = any(h is not None for h in helpers)
    for key in missing + extra:
        _asked[key] = helper
    compile_notice.background_started()
    return False


def compile_notice_ready():
    if _asked:
        from . import compile_notice
        compile_notice.background_ready()


def wait(timeout=None):
    """Wait for the helper processes compiling what this process asked for:
    the ones it started, and another process's helper (or ``fastnn
    compile``) it found at work on the same cache; the kernels are then in
    the cache. Returns whether none is still running. A script that wants
    the next run warm, or a Docker build step, can call it; a fit never
    needs to."""
    import time

    end = None if timeout is None else time.monotonic() + timeout
    for helper in set(_asked.values()):
        try:
            helper.wait(None if end is None else max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
    for path in list(_others):
        # The other helper holds the directory's lock until it exits.
        while True:
            try:
                lock = claim(path)
            except OSError:
                break
            if lock is not None:
                if lock != NO_LOCK:
                    os.close(lock)
                _others.discard(path)
                break
            if end is not None and time.monotonic() >= end:
                return False
            time.sleep(0.2)
    return True


def _start_helper(keys, lock=NO_LOCK):
    """A helper compiling ``keys`` in the background; it inherits ``lock``
    (this cache's compile lock, held) and holds it until it exits."""
    env = dict(os.environ, FASTNN_QUIET="1", FASTNN_COLD_ASSIST="0",
               FASTNN_BACKGROUND_COMPILE="0", FASTNN_HELPER_LOCK=str(lock))
    # A session of its own: a Ctrl-C meant for this process's fit does not
    # cut the cache-writing helper short.
    helper = subprocess.Popen(helper_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env=env, start_new_session=True,
                              pass_fds=() if lock == NO_LOCK else (lock,))
    helper.stdin.write(pickle.dumps({"background": keys}))
    helper.stdin.close()
    return helper


def _main():
    """The helper: compile each (kernel name, signature) read from stdin;
    each compiled kernel is written to the cache. In the background mode
    (:func:`ready`) it runs at a lower priority, holds the cache's compile
    lock, skips what another helper cached meanwhile, and exits with
    ``CANNOT_WRITE`` (the reason on stdout) as soon as the cache refuses a
    kernel."""
    import warnings

    from ..kernels import train as K
    from . import kernel_cache

    job = pickle.loads(sys.stdin.buffer.read())
    if isinstance(job, list):  # assist(): this process waits for it
        for name, sig in job:
            getattr(K, name).compile(sig)
        return
    try:
        # Background work: the user's foreground processes (the fit on NumPy
        # among them) go first when the cores are contended.
        os.nice(5)
    except (AttributeError, OSError):
        pass
    warnings.simplefilter("ignore")  # the reason goes to the parent instead
    path = cache_dir()
    lock = int(os.environ.get("FASTNN_HELPER_LOCK", NO_LOCK))
    if lock == NO_LOCK:  # started by hand (or no flock): wait for any other helper
        try:
            lock = claim(path, wait=True)
        except OSError:
            pass
    problem = kernel_cache.unusable(path)
    for name, sig in job["background"]:
        if problem is None:
            disp = kernel(name)
            if not is_cached(disp, sig):  # another helper may have cached it meanwhile
                disp.compile(sig)
            if kernel_cache.write_errors:
                problem = kernel_cache.write_errors[0][1]
        if problem is not None:
            sys.stdout.write(problem)
            sys.stdout.flush()
            os._exit(CANNOT_WRITE)


if __name__ == "__main__":
    _main()
