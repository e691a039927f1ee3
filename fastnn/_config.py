"""Numba compilation settings for every fastnn kernel, in one place.

Kernels never pass flags to ``@njit`` themselves; they use the decorators
defined here, so changing (say) caching or fast-math is a one-line edit.

Environment overrides (read once at import):

``FASTNN_CACHE=0``     do not write/read Numba's on-disk cache (where it is
                       kept otherwise: see kernel_cache.py).
``FASTNN_PARALLEL=0``  compile the ``prange`` kernels serially (debugging,
                       or to compare against the serial schedule).

Threads: Numba's thread pool is used for the ``prange`` loops; its size is
``numba.get_num_threads()`` (set it with ``NUMBA_NUM_THREADS`` or
:func:`fastnn.set_num_threads`). The threading layer prefers OpenMP, whose
parallel-region start costs about a microsecond; the ``workqueue`` fallback
costs tens of microseconds per region, which dominates small layers.
fastnn never calls BLAS inside a training step, so Numba's threads do not
compete with OpenBLAS's spinning threads.
"""
import hashlib
import os
from pathlib import Path

import numba

from .runtime import compile_notice, interrupts, kernel_cache

# A Ctrl-C must not be swallowed by a compile (see interrupts.py): installed
# before the first kernel is defined.
interrupts.install()
compile_notice.install()  # "compiling kernels ... (first run only)" on stderr

# Why no 'nnan'/'ninf': fit() must detect a diverging loss (NaN/inf), and the
# stable sigmoid/softmax rely on exp() overflowing to inf correctly.
# Why no 'afn': approximate exp/log would break float64 parity with NumPy.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
CACHE = os.environ.get("FASTNN_CACHE", "1") != "0"
PARALLEL = os.environ.get("FASTNN_PARALLEL", "1") != "0"

if "NUMBA_THREADING_LAYER" not in os.environ:
    # Prefer the layers with cheap region start-up; Numba picks the first one
    # that loads.
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


_PACKAGE_DIR = Path(__file__).resolve().parent


def _target_isa():
    """The vector instruction set the kernels are compiled for: Numba's
    target features (``NUMBA_CPU_FEATURES`` when set, e.g. to build AVX2
    code on an AVX-512 host), else the host's. The tile shapes are
    chosen for it (kernels/layout.py): AVX-512 tiles compiled for AVX2 would
    need twice the registers it has."""
    features = os.environ.get("NUMBA_CPU_FEATURES")
    if features:
        on = {f[1:] for f in features.split(",") if f.startswith("+")}
    else:
        # Numba's rule: without NUMBA_CPU_FEATURES it compiles for the host's
        # features, whatever NUMBA_CPU_NAME says (a CPU name alone changes
        # only the scheduling model).
        import llvmlite.binding as ll

        try:
            on = {k for k, v in ll.get_host_cpu_features().items() if v}
        except RuntimeError:
            return "SSE"
    return "AVX-512" if "avx512f" in on else "AVX2" if {"avx2", "fma"} <= on else "SSE"


def _target_cpu():
    """The CPU model the kernels are scheduled for: ``NUMBA_CPU_NAME`` when
    set (e.g. ``znver4``, ``skylake-avx512``), else LLVM's name for the host."""
    name = os.environ.get("NUMBA_CPU_NAME", "")
    if name and name != "host":
        return name
    import llvmlite.binding as ll

    try:
        return ll.get_host_cpu_name()
    except RuntimeError:
        return "generic"


TARGET_ISA = _target_isa()
AVX512 = TARGET_ISA == "AVX-512"
TARGET_CPU = _target_cpu()
# AMD's Zen cores (LLVM names them znver1-5): some constants in
# kernels/layout.py follow the core's caches rather than its vector width.
ZEN = TARGET_CPU.startswith("znver")


def _prefer_512_bit_vectors():
    # LLVM's tuning for most AVX-512 CPUs includes "prefer-256-bit": it then
    # vectorises with ymm registers only, and a 48-float register tile needs
    # twice as many registers as exist, so it spills, at half the speed. This is a
    # process-wide Numba setting, applied only if the user set none, and only
    # effective if fastnn is imported before anything else is compiled.
    if not AVX512 or os.environ.get("NUMBA_CPU_FEATURES") or os.environ.get("NUMBA_CPU_NAME"):
        return
    import llvmlite.binding as ll

    if numba.config.CPU_FEATURES is None:
        numba.config.CPU_FEATURES = ll.get_host_cpu_features().flatten() + ",-prefer-256-bit"


_prefer_512_bit_vectors()


def _code_settings():
    # The settings that change the machine code but not the sources
    # (Numba's own cache key does not include `parallel`: without them,
    # FASTNN_PARALLEL=0 loaded the cached parallel kernels).
    return repr((PARALLEL, sorted(FASTMATH), numba.config.CPU_FEATURES, numba.config.CPU_NAME,
                 ZEN))


def kernel_source_stamp():
    """One hash over every module that holds kernels (and this config) and
    the settings that change the machine code."""
    h = hashlib.sha256()
    for path in sorted(_PACKAGE_DIR.glob("kernels/*.py")) + [Path(__file__).resolve(),
                                                           _PACKAGE_DIR / "runtime" / "kernel_cache.py"]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(_code_settings().encode())
    return h.hexdigest()


def kernel_variant():
    """A short tag of the code-changing settings, part of every cache file
    name: processes with other settings (another CPU model sharing a home
    directory, ``FASTNN_PARALLEL=0``) keep their kernels beside these
    instead of replacing them at each turn; a source edit still replaces
    them in place."""
    return hashlib.sha256(_code_settings().encode()).hexdigest()[:8]


if CACHE:
    # Where kernels are cached (NUMBA_CACHE_DIR, the package, a per-user
    # directory), stamped with all kernel sources, integrity-checked: see
    # kernel_cache.py.
    kernel_cache.install(kernel_source_stamp(), before_load=lambda: start_threads(),
                         variant=kernel_variant())


# NumPy's error model: a float division by zero gives inf/NaN (which the
# divergence checks catch) instead of a test-and-raise before every
# division, which keeps LLVM from vectorising any loop that divides (Adam's
# update; the prange bodies already compile this way). No kernel relies on ZeroDivisionError.
ERROR_MODEL = "numpy"


def jit(fn=None, **kw):
    """Serial compiled kernel."""
    opts = dict(fastmath=FASTMATH, cache=CACHE, nogil=True, error_model=ERROR_MODEL)
    opts.update(kw)
    opts["fastmath"] = set(opts["fastmath"])
    if fn is None:
        return lambda f: numba.njit(**opts)(f)
    return numba.njit(**opts)(fn)


def jit_parallel(fn=None, **kw):
    """Compiled kernel whose ``prange`` loops run on Numba's thread pool."""
    return jit(fn, parallel=PARALLEL, **kw)


# For gather-style loops (sum over a sparse index list of vector rows):
# with 'reassoc' LLVM vectorises the *outer* reduction with gathers instead
# of the contiguous inner row loop, which ran ~4x slower.
FASTMATH_NO_REASSOC = FASTMATH - {"reassoc"}


def jit_inline(fn):
    """Inlined into its callers at Numba IR level: small helpers, and the
    dispatching wrappers on the drivers' call chains (``dense_backward``,
    ``gemm_*_into``, ``batch_views``). A function compiled on its own is
    linked into each caller's module, where LLVM optimises and emits its
    whole call tree again: every wrapper level re-did the work of the
    levels below it. (Not for functions with ``prange``, which only run in
    parallel in a ``jit_parallel`` caller.)"""
    return jit(fn, inline="always")


def start_threads():
    """Start Numba's thread pool, once per process, sized by the environment
    as it is now; fastnn calls it before it loads its first kernel.

    Why before a load: a cached kernel that calls a parallel kernel needs the
    parallel runtime's symbols (e.g. ``allocate_sched``) loaded before it is
    read back, or LLVM aborts with "Symbol not found" or the process
    segfaults; starting the pool loads them. Why not at import: a Dask
    worker imports a user's script (and so fastnn) before it applies its
    ``NUMBA_NUM_THREADS``, and Numba refuses every later compile once the
    pool runs at another size than the environment's; and a process forked
    after the pool started cannot run GNU OpenMP regions, so a fork made
    between ``import fastnn`` and the first fit keeps the compiled kernels."""
    if not PARALLEL:
        return
    from numba.np.ufunc import parallel

    if parallel._is_initialized:
        return
    # NUMBA_NUM_THREADS as set now, not as at Numba's import (which sized
    # the pool it launches: parallel.NUM_THREADS).
    numba.core.config.reload_config()
    parallel.NUM_THREADS = parallel.get_thread_count()
    parallel._launch_threads()


class _PoolBeforeCompile(numba.core.event.Listener):
    """Starts the pool before fastnn's first compile too: Numba would start
    it while lowering a parallel kernel, at the size it read at its import."""

    def on_start(self, ev):
        func = getattr((ev.data or {}).get("dispatcher"), "py_func", None)
        if getattr(func, "__module__", "").startswith("fastnn."):
            start_threads()

    def on_end(self, ev):
        pass


numba.core.event.register("numba:compile", _PoolBeforeCompile())
