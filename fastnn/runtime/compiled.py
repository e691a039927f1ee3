"""The compiled backend: the engine's operations (see
:mod:`fastnn.engine.backend`) on the Numba kernels.

This is the one place that knows what running a kernel involves: whether
it is compiled or cached (:mod:`.cold_start`, which otherwise has a helper
compile it while the engine runs NumPy), on how many threads
(:mod:`.threads`, measured per kind of work), the compile notice after a
call that compiled, and a Ctrl-C swallowed while compiling
(:mod:`.interrupts`).
"""
import time

import numba
import numpy as np

from ..kernels import sparse as sparse_kernels
from ..kernels import train as K
from ..kernels.bundles import EpochPlan
from ..kernels.intrinsics import flush_denormals, restore_fp_mode
from . import cold_start, compile_notice, interrupts, threads


def _call(n_threads, kernel, *args):
    """``kernel(*args)`` on ``n_threads`` threads, with denormals flushed
    to zero on each (see kernels/intrinsics.py: on Intel cores they cost
    ~100 cycles an operation), and this thread's mode restored after."""
    threads.start_pool_threads()
    mode = flush_denormals()
    try:
        return threads.run_with(n_threads, kernel, *args)
    finally:
        restore_fp_mode(mode)


def _timed(n_threads, kernel, *args):
    """``kernel(*args)`` on ``n_threads`` threads: (its result, its seconds,
    or None when something compiled or loaded from the cache during the
    call: such a call says nothing about speed)."""
    before = compile_notice.compiles[0], len(kernel.overloads)
    t0 = time.perf_counter()
    result = _call(n_threads, kernel, *args)
    seconds = time.perf_counter() - t0
    if before != (compile_notice.compiles[0], len(kernel.overloads)):
        seconds = None
    return result, seconds


class CompiledBackend:
    name = "compiled"

    pool_unusable = staticmethod(threads.pool_unusable)

    @staticmethod
    def ready(calls, memo=None, then=()):
        """Whether ``calls`` run without compiling here (see
        :func:`.cold_start.ready`, which otherwise starts a helper)."""
        if not cold_start.ready(calls, memo, then):
            return False
        cold_start.compile_notice_ready()
        return True

    @staticmethod
    def prepare(trainer, opt, state):
        """Before a fit's first compiled epoch: the notice that the helper's
        kernels are in use, and on a cold cache the two-core compile."""
        compile_notice.background_ready()
        cold_start.assist(trainer, opt, state)

    # ------------------------------------------------------------ training
    @staticmethod
    def shuffle(trainer):
        d = trainer.data
        with threads.serialized():
            K.epoch_begin(d.order, trainer.engine.shuffle_state, d.shuffle, trainer.sp,
                          trainer.csc_ready, d.batch_size)
        # The CSC blocks now follow the order: still valid next epoch (and
        # next fit) unless shuffling reorders the rows.
        trainer.csc_ready = not d.shuffle

    def train(self, trainer, opt, state, first, last, n_threads=None):
        """Batches ``first..last-1`` on the thread count the chunk chooser
        prefers (a chooser's probe of the other count is taken here), or on
        ``n_threads`` (at most Numba's)."""
        if n_threads is not None:
            self._run(None, trainer, min(n_threads, numba.config.NUMBA_NUM_THREADS), first,
                      last, opt, state, None)
            compile_notice.done()
            return
        chooser = threads.chooser_for(("chunks",) + trainer.work_key)
        n_threads, probe = chooser.pick()
        if probe is not None and last - first <= (1 if probe == 1 else 2):
            # Too few batches to probe some and run the rest (iris: one
            # batch an epoch, whose single thread was never measured): the
            # chunk is the probe.
            self._run(chooser, trainer, probe, first, last, opt, state, True)
            first = last
        elif probe == 1 and last - first > 1:
            # Half the chunk on this thread alone, to measure it: each call
            # pays ~0.1 ms of dispatch and argument unboxing, which a
            # one-batch probe of small batches counted as the thread's
            # (50-32x8-3, batch 32: 7.3 us/row against 3.9 over a whole
            # epoch, so the pool kept running though it was slower).
            mid = first + (last - first) // 2
            self._run(chooser, trainer, 1, first, mid, opt, state, True)
            first = mid
        elif probe is not None and last - first > 2:
            # The pool, measured on the chunk after one unmeasured batch
            # that wakes its threads (see threads.py).
            self._run(chooser, trainer, probe, first, first + 1, opt, state, None)
            first += 1
            n_threads = probe
        if first < last:
            self._run(chooser, trainer, n_threads, first, last, opt, state,
                      probe is not None and n_threads == probe)
        compile_notice.done()
        interrupts.check()  # a Ctrl-C swallowed while compiling (see interrupts.py)

    @staticmethod
    def _run(chooser, trainer, n_threads, first, last, opt, state, probe):
        """Batches first..last-1 on ``n_threads`` threads, timed for the
        ``chooser`` unless ``probe`` is None; their sums continue the
        epoch's in ``trainer.no_plan``."""
        _, seconds = _timed(n_threads, K.train_batches, trainer.data, trainer.model,
                            trainer.head, trainer.grad, state, opt, trainer.sp, trainer.work,
                            trainer.bufs, first, last, trainer.no_plan)
        rows = min(trainer.n, last * trainer.data.batch_size) - first * trainer.data.batch_size
        if probe is not None and seconds is not None:
            chooser.record(n_threads, rows, seconds, probe)

    def train_epochs(self, trainer, opt, state, rates, n_threads=None, timed=True):
        """Whole epochs at the learning ``rates`` in one call (or two: the
        pool's figure is taken after one unmeasured epoch that wakes its
        threads, asleep through the Python before the call). Returns (each
        epoch's sums up to a diverged one, whether it diverged, the thread
        count used, seconds per epoch of the last call)."""
        chooser = threads.chooser_for(("epochs",) + trainer.work_key)
        probe = None
        if n_threads is None:
            n_threads, probe = chooser.pick()
            n_threads = probe if probe is not None else n_threads
        wake = (timed and n_threads > 1 and len(rates) > 2
                and (probe is not None or n_threads not in chooser.rate))
        sums, per_epoch, diverged = [], 0.0, False
        for seg in ([rates[:1], rates[1:]] if wake else [rates]):
            plan = EpochPlan(seg, np.empty((len(seg), 3)), np.zeros(2, np.int64),
                             trainer.engine.shuffle_state, trainer.csc_ready)
            _, seconds = _timed(n_threads, K.train_batches, trainer.data, trainer.model,
                                trainer.head, trainer.grad, state, opt, trainer.sp,
                                trainer.work, trainer.bufs, 0, 0, plan)
            trainer.csc_ready = not trainer.data.shuffle
            compile_notice.done()
            done, diverged = int(plan.status[0]), bool(plan.status[1])
            if seconds is not None:
                per_epoch = seconds / done
                if timed and not (wake and not sums):
                    chooser.record(n_threads, done * trainer.n, seconds, probe is not None)
            sums.extend(plan.sums[:done])
            if diverged:
                break
        return sums, diverged, n_threads, per_epoch

    # ----------------------------------------------------------- inference
    @staticmethod
    def evaluate(X, sp, rows, labels, T, model, head, work):
        result = _call(threads.preferred(), K.evaluate_batches, X, sp, rows, labels, T,
                       model, head, work)
        compile_notice.done()
        return result

    @staticmethod
    def predict(X, sp, rows, model, head, work, out):
        bad = _call(threads.preferred(), K.predict_batches, X, sp, rows, model, head, work,
                    out)
        compile_notice.done()
        return bad

    @staticmethod
    def full_batch(X, labels, T, w, model, head, work, grad, total):
        """Full-batch loss and gradient. Between calls the solver runs
        single-threaded (and BLAS threads may spin), so the pool's regions
        wait on woken or contended threads: both counts are measured."""
        chooser = threads.chooser_for(("full_batch", X.shape, X.dtype.str))
        current, probe = chooser.pick()
        use = probe if probe is not None else current
        loss, seconds = _timed(use, K.full_batch_gradient, X, labels, T, w, model, head, work,
                               grad, total)
        if seconds is not None:
            chooser.record(use, X.shape[0], seconds, probe is not None)
        interrupts.check()
        compile_notice.done()
        return loss

    # --------------------------------------------------------------- inputs
    @staticmethod
    def scan(a):
        counts = np.empty(a.shape[0], np.int64)
        rowhash = np.empty(a.shape[0], np.uint64)
        # On the thread count training last ran on: a fit's scan of its
        # data is a parallel region, whose join waits for a thread that
        # another process keeps off its core.
        bad = threads.run_with(threads.preferred(), sparse_kernels.scan_rows, a, counts, rowhash)
        compile_notice.done()
        if bad:
            return counts, None, True
        return counts, int(sparse_kernels.fingerprint(rowhash)), False

    @staticmethod
    def csr_fill(X, indptr, indices, values):
        with threads.serialized():
            sparse_kernels.csr_fill(X, indptr, indices, values)
        compile_notice.done()


BACKEND = CompiledBackend()
