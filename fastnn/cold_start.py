"""A cold first fit compiles on two cores instead of one.

On an empty kernel cache the first epoch waits for Numba to compile the
training drivers, one function after another on one core. The forward pass
(``network_forward`` and the kernels below it) and the update
(``apply_update``) do not depend on the backward pass, so before the first
epoch :func:`assist` starts a helper interpreter that compiles them into the
on-disk cache while this process compiles the backward (the larger share);
the training driver then loads the helper's share from the cache.
Measured (``python bench/compile_profile.py``, classic 784-100-50-10 float32,
1000 rows, 2-core AVX-512 Xeon): 38.5 s from import to the end of the fit
without the helper, 33.5 s with it. The gain is less than half because the
two shares have small kernels in common (both compile them) and linking
the training driver itself (~7 s) can only start when both are done.

Only when it can pay: the kernel cache is on, the machine has a second
core, and the backward for these exact argument types is neither loaded nor
cached. Anything that goes wrong in the helper (it crashed, was killed,
guessed a type wrongly) costs nothing but the overlap: this process then
compiles what is missing itself, as it would have without the helper.
``FASTNN_COLD_ASSIST=0`` turns it off.

The helper is a fresh interpreter (``python -m fastnn.cold_start``), not a
multiprocessing child: spawning would re-import the user's script (running
it again if it has no ``__main__`` guard), and forking a process whose
OpenMP threads have started is fatal with GNU OpenMP.
"""
import os
import pickle
import subprocess
import sys

from . import _config


# Who compiles what. Compiled alone: backward ~21 s, forward + update ~12 s
# (+ ~2 s to start the helper); the larger share stays here, so a helper
# that fails costs the smaller one.
HELPER = ("network_forward", "apply_update")
MAIN = ("network_backward",)


def _enabled():
    return (_config.CACHE and (os.cpu_count() or 1) > 1
            and os.environ.get("FASTNN_COLD_ASSIST", "1") != "0")


def is_cached(dispatcher, sig):
    """Whether ``dispatcher`` has machine code for ``sig`` in memory or in
    its on-disk cache (without loading it). Uses Numba's cache internals;
    if they change, answers True (no helper: the safe side)."""
    if sig in dispatcher.overloads:
        return True
    try:
        cache = dispatcher._cache
        if not cache._enabled:
            return True
        key = cache._index_key(sig, dispatcher.targetctx.codegen())
        return key in cache._cache_file._load_index()
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
    sp = typeof(trainer.sp) if trainer.sp is not None else types.none
    rows = typeof(data.order)
    return {
        "network_forward": (model, x, rows, sp, work),
        "network_backward": (model, x, types.int64, sp, grad, work, types.int64),
        "apply_update": (model, grad, typeof(state), typeof(opt), types.float64),
    }


def assist(trainer, opt, state):
    """Before a fit's first epoch: if the backward pass would have to be
    compiled, compile it in a helper process while this one compiles the
    rest (see the module docstring). Returns when both are done."""
    if not _enabled():
        return
    from .kernels import train as K

    try:
        sigs = signatures(trainer, opt, state)
    except Exception:  # an argument Numba cannot type: the call itself will say so
        return
    if sigs is None or is_cached(K.network_backward, sigs["network_backward"]):
        return
    helper_part = [n for n in HELPER if not is_cached(getattr(K, n), sigs[n])]
    env = dict(os.environ, FASTNN_QUIET="1", FASTNN_COLD_ASSIST="0")
    try:
        helper = subprocess.Popen([sys.executable, "-m", "fastnn.cold_start"],
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


def _main():
    """The helper: compile each (kernel name, signature) read from stdin;
    each compiled kernel is written to the cache."""
    from .kernels import train as K

    for name, sig in pickle.loads(sys.stdin.buffer.read()):
        getattr(K, name).compile(sig)


if __name__ == "__main__":
    _main()
