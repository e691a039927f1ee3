"""The training engine: one fit's data made ready for the kernels, epochs
run in compiled chunks with rollback on interrupt or divergence, and the one
epoch loop that ``Network.fit``/``partial_fit`` and the scikit-learn
estimators drive. What to do after each epoch (learning rate, stopping,
keeping the best parameters) is delegated to a policy (:mod:`.stopping`).
"""
import contextlib
import math
import sys
import threading
import time

import numpy as np

from ..runtime import cold_start, compile_notice, interrupts, threads
from . import inputs, numpy_engine, registry, validation
from ..kernels import train as train_kernels
from ..kernels.bundles import BatchBuffers, EpochPlan, Optimizer, OptimizerState, TrainData
from ..kernels.layout import row_split
from .memory import aligned_zeros, work_buffers

# Inputs larger than this are named as the likely cause of a divergence.
INPUT_SCALE_WARN = 1e4


class TrainingDivergedError(FloatingPointError, ValueError):
    """The loss or a parameter became NaN or infinite during ``fit``."""


class EngineState:
    """What training keeps on a network between fits: the shuffling stream
    (SplitMix64 state), the sparse forms of the last inputs, and the
    optimizer state that ``partial_fit`` continues."""

    def __init__(self, seed):
        self.shuffle_state = np.random.SeedSequence(seed).generate_state(1, np.uint64)
        self.input_cache = None       # inputs.InputCache
        self.optimizer_state = None   # (kind, OptimizerState)
        self._busy = threading.Lock()

    @contextlib.contextmanager
    def exclusive(self):
        """One training run at a time per network: a second ``fit`` from
        another thread would interleave updates of the same parameters (and
        histories) in no reproducible order, so it is refused."""
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("this network is already training (fit or partial_fit running "
                               "in another thread); wait for it, or train a copy")
        try:
            yield
        finally:
            self._busy.release()

    def __getstate__(self):
        # The sparse-input cache is large and only a speed-up: not pickled.
        return {"shuffle_state": self.shuffle_state, "optimizer_state": self.optimizer_state}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.input_cache = None
        self._busy = threading.Lock()


def optimizer(name="sgd", lr=0.1, momentum=0.0, nesterov=False, beta1=0.9, beta2=0.999,
              eps=1e-8, l2=0.0, l2_per_row=False):
    """Checked optimizer settings (:class:`Optimizer`)."""
    validation.check_choice("optimizer", name, validation.OPTIMIZERS)
    lr = validation.check_float("lr", lr, 0, low_open=True)
    momentum = validation.check_float("momentum", momentum, 0, 1, high_open=True)
    nesterov = validation.check_bool("nesterov", nesterov)
    beta1 = validation.check_float("beta1", beta1, 0, 1, high_open=True)
    beta2 = validation.check_float("beta2", beta2, 0, 1, high_open=True)
    eps = validation.check_float("eps", eps, 0, low_open=True)
    l2 = validation.check_float("l2", l2, 0)
    return Optimizer(registry.OPTIMIZERS[name].kind, lr, momentum, nesterov, beta1, beta2, eps, l2,
                     bool(l2_per_row))


def fresh_state(kind, theta):
    """Zero optimizer state for ``kind`` (Adam needs the second moment)."""
    second = registry.OPTIMIZER_BY_KIND[kind].second_moment
    sq = np.zeros_like(theta) if second else np.zeros(0, theta.dtype)
    return OptimizerState(np.zeros_like(theta), sq, np.zeros(1, np.int64))


def state_for(engine, opt, theta, keep):
    """The optimizer state to train with: the engine's, if ``keep`` and it
    belongs to the same kind of optimizer, else a fresh one (kept on the
    engine for the next ``partial_fit``)."""
    held = engine.optimizer_state
    if not keep or held is None or held[0] != opt.kind:
        engine.optimizer_state = (opt.kind, fresh_state(opt.kind, theta))
    return engine.optimizer_state[1]


def guarded(run, rollback, theta):
    """An epoch's sums from ``run()``, undone by ``rollback()`` if it raises
    (re-raised) or if the loss or a parameter in ``theta`` is not finite
    (returns None): what a guarded epoch does, for any kind of trainer."""
    try:
        sums = run()
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            interrupts.keep_frames(e)
        rollback()
        raise
    if not (np.isfinite(sums[0]) and np.isfinite(sums[1]) and np.isfinite(theta).all()):
        rollback()
        return None
    return sums


class Trainer:
    """The data of one fit prepared for the kernels (sparse forms, work
    buffers, visiting order); :meth:`guarded_epoch` runs one epoch."""

    # An epoch runs as this many compiled calls (each a run of consecutive
    # batches): a progress bar moves, and Ctrl-C is noticed, between calls,
    # never inside the compiled loop. A call costs ~4 us of dispatch.
    EPOCH_CHUNKS = 64
    # ... but without a progress report a call lasts at least this long, as
    # the last epoch measured:
    # an epoch of a few quick batches (digits: 9 batches of ~0.1 ms) in one
    # call, not nine (each ~20-40 us of dispatch and argument unboxing):
    # MLPClassifier((50,)) on digits 286 -> 248 ms.
    MIN_CHUNK_SECONDS = 0.005
    # Epochs shorter than this run several per compiled call (see
    # run_ahead) when nothing looks at the model between them (no
    # validation, callbacks or progress display): iris' ~40 us epoch paid
    # ~30 us of Python and dispatch per epoch.
    RUN_AHEAD_EPOCH_SECONDS = 0.002
    # ... and such a call lasts about this long at most (Ctrl-C is noticed,
    # and the thread choice revised, between calls).
    RUN_AHEAD_CALL_SECONDS = 0.02

    def __init__(self, layout, model, head, engine, X, labels, T, batch_size, shuffle,
                 sample_weight=None):
        n = X.shape[0]
        batch_size = min(validation.check_int("batch_size", batch_size, 1), n)
        shuffle = validation.check_bool("shuffle", shuffle)
        self.model, self.head, self.engine, self.n = model, head, engine, n
        dtype = model.theta.dtype
        split_sparse = row_split(layout.sizes, batch_size, sparse=True)
        self.sp, self.csc_ready, engine.input_cache = inputs.prepare(
            X, dtype, batch_size, shuffle, engine.input_cache,
            csc=not (split_sparse and shuffle))
        self.sparse = self.sp is not None
        # The NumPy engine (a first run, while the kernels compile) reads a
        # dense X as it is, even when the kernels read its sparse form.
        self._numpy_x = None if inputs.is_scipy_sparse(X) else X
        if inputs.is_scipy_sparse(X):
            X = inputs.dense_placeholder(X, dtype)
        self.work = work_buffers(layout, batch_size, dtype, self.sparse,
                                 split=split_sparse if self.sparse
                                 else row_split(layout.sizes, batch_size))
        self.grad = aligned_zeros(model.theta.size, dtype)
        w = np.empty(0, np.float64) if sample_weight is None else sample_weight
        self.data = TrainData(X, labels, T, w, np.arange(n, dtype=np.int64), batch_size,
                              shuffle)
        gather = shuffle
        self.bufs = BatchBuffers(
            np.empty((batch_size if gather and not self.sparse else 0, X.shape[1]), dtype),
            np.empty(batch_size if gather and labels.size else 0, np.int64),
            np.empty((batch_size if gather and T.size else 0, T.shape[1]), dtype),
            np.empty(batch_size if gather and w.size else 0, np.float64))
        self.n_batches = -(-n // batch_size)
        # Thread choices for chunks of batches and for runs of whole epochs.
        work = (tuple(int(s) for s in layout.sizes), batch_size, dtype.str, self.sparse)
        self.chooser = threads.chooser_for(("chunks",) + work)
        self.epochs_chooser = threads.chooser_for(("epochs",) + work)
        # A call of train_batches on batches of the current epoch; its sums
        # row holds the epoch's running sums (see train_batches).
        self.no_plan = EpochPlan(np.empty(0, np.float64), np.zeros((1, 3), np.float64),
                                 np.zeros(2, np.int64), engine.shuffle_state, False)
        self._snapshot = None  # what the running epoch changes, as it was before it
        self._saved = None
        self._assisted = False
        self._kernels_ready = False
        self._batch_seconds = None  # per batch, the last compiled epoch

    def guarded_epoch(self, opt, state, progress):
        """:meth:`epoch`, undone if it does not finish well: what it changes
        (parameters, shuffling stream, optimizer ``state``) is restored if
        it raises (e.g. ``KeyboardInterrupt``) or diverges (NaN/inf loss or
        parameters). Returns the epoch's sums, or None if it diverged."""
        self.snapshot(state)
        return guarded(lambda: self.epoch(opt, state, progress), self.rollback,
                       self.model.theta)

    def snapshot(self, state):
        """Copy what an epoch changes (parameters, shuffling stream,
        optimizer ``state``) for :meth:`rollback`."""
        self._saved = (self.model.theta, self.engine.shuffle_state) + tuple(state)
        if self._snapshot is None or len(self._snapshot) != len(self._saved):
            self._snapshot = [np.empty_like(a) for a in self._saved]
        for dst, src in zip(self._snapshot, self._saved):
            dst[...] = src

    def input_scale(self):
        """Largest |x| of the training inputs (for error messages)."""
        x = self.sp.values if self.sparse else self.data.X
        return float(np.abs(x).max()) if x.size else 0.0

    def rollback(self):
        """Undo the last guarded epoch (also after it returned: an interrupt
        while its validation ran)."""
        with interrupts.deferred():  # a second Ctrl-C must not cut the restore short
            for src, dst in zip(self._snapshot, self._saved):
                dst[...] = src

    def _compiled(self, opt, state):
        """Whether this epoch runs the compiled drivers, or NumPy's while
        they compile in the background (:func:`cold_start.ready`)."""
        if self._kernels_ready:
            return True
        data = self.data
        calls = [("epoch_begin", (data.order, self.engine.shuffle_state, data.shuffle,
                                  self.sp, self.csc_ready, data.batch_size)),
                 ("train_batches", (data, self.model, self.head, self.grad, state, opt,
                                    self.sp, self.work, self.bufs, 0, 1, self.no_plan))]
        if not cold_start.ready(calls, memo=("train", data.X.dtype.str, data.X.flags.writeable,
                                             self.sparse), then=self._next_calls()):
            return False
        self._kernels_ready = True
        compile_notice.background_ready()
        if not self._assisted:
            self._assisted = True
            cold_start.assist(self, opt, state)  # a cold cache compiles on two cores
        return True

    def _next_calls(self):
        """The calls a fit likely makes next (validation, predict on dense
        rows like X), for a background compile to do after training's."""
        data, X = self.data, self.data.X
        like_x = np.empty((0, X.shape[1]), X.dtype)
        like_x.setflags(write=X.flags.writeable)
        rows = np.empty(0, np.int64)
        out = np.empty((0, int(self.model.sizes[-1])), X.dtype)
        return [("evaluate_batches", (like_x, None, rows, data.labels, data.T, self.model,
                                      self.head, self.work)),
                ("predict_batches", (like_x, None, rows, self.model, self.head, self.work,
                                     out))]

    def epoch(self, opt, state, progress):
        compiled = self._compiled(opt, state)
        kernels = train_kernels if compiled else numpy_engine
        cache = self.engine.input_cache
        if cache is not None:  # invalid while (and if interrupted while) rebuilding
            cache.csc_in_order = self.csc_ready
        data = self.data
        with threads.serialized():
            kernels.epoch_begin(data.order, self.engine.shuffle_state, data.shuffle,
                                self.sp, self.csc_ready, data.batch_size)
        # The CSC blocks now follow `order`: still valid next epoch (and next
        # fit) unless shuffling reorders the rows. (NumPy's epoch_begin does
        # not build them.)
        self.csc_ready = compiled and not data.shuffle
        if cache is not None:
            cache.csc_in_order = self.csc_ready
        report = progress_reporter(progress)
        nb = self.n_batches
        step = max(1, -(-nb // self.EPOCH_CHUNKS))
        if compiled and self._batch_seconds and report is None:
            step = max(step, int(self.MIN_CHUNK_SECONDS / self._batch_seconds))
        t0 = time.perf_counter()
        self.no_plan.sums[0] = 0.0
        for first in range(0, nb, step):
            last = min(nb, first + step)
            if not compiled:
                dense = self._numpy_x is not None
                with numpy_engine.one_blas_thread():
                    numpy_engine.train_batches(
                        data._replace(X=self._numpy_x) if dense else data, self.model,
                        self.head, self.grad, state, opt, None if dense else self.sp,
                        self.work, self.bufs, first, last, self.no_plan)
                compile_notice.done()  # what compiled before (e.g. the CSR build) is done
                if report is not None:
                    report(last, nb)
                interrupts.check()
                continue
            n_threads, probe = self.chooser.pick()
            if probe is not None and last - first <= (1 if probe == 1 else 2):
                # Too few batches to probe some and run the rest (iris: one
                # batch an epoch, whose single thread was never measured and
                # ran 44 us a batch where the pool took 67): the chunk is the
                # probe.
                self._run(probe, first, last, opt, state, True)
                first = last
            elif probe == 1 and last - first > 1:
                # One batch on this thread alone, to measure it.
                self._run(1, first, first + 1, opt, state, True)
                first += 1
            elif probe is not None and last - first > 2:
                # The pool, measured on the chunk after one unmeasured batch
                # that wakes its threads (see threads.py).
                self._run(probe, first, first + 1, opt, state, None)
                first += 1
                n_threads = probe
            if first < last:
                self._run(n_threads, first, last, opt, state,
                          probe is not None and n_threads == probe)
            compile_notice.done()
            if report is not None:
                report(last, nb)
            interrupts.check()  # a Ctrl-C swallowed while compiling (see interrupts.py)
        if compiled:
            self._batch_seconds = (time.perf_counter() - t0) / nb
        return self._sums()

    def _sums(self):
        """The running sums of the current epoch's batches (see no_plan)."""
        loss, pen, correct = self.no_plan.sums[0]
        return float(loss), float(pen), int(correct)

    def epochs_per_call(self, remaining):
        """How many of the ``remaining`` epochs the next call of
        :meth:`run_ahead` should run: 1 (epoch by epoch) until the kernels
        are running and while an epoch takes more than
        ``RUN_AHEAD_EPOCH_SECONDS``."""
        if not (self._kernels_ready and self._batch_seconds):
            return 1
        epoch = self._batch_seconds * self.n_batches
        if epoch > self.RUN_AHEAD_EPOCH_SECONDS:
            return 1
        return max(1, min(remaining, int(self.RUN_AHEAD_CALL_SECONDS / epoch)))

    def run_ahead(self, opt, state, rates):
        """Whole epochs at the learning ``rates``, in one compiled call
        (:func:`fastnn.kernels.train.train_batches` with an
        :class:`EpochPlan`): the parameters, shuffle stream and optimizer
        ``state`` end as ``len(rates)`` calls of :meth:`guarded_epoch` would
        leave them. Returns (the sums of the epochs run, whether the epoch
        after them diverged); a diverged epoch is undone, as
        :meth:`guarded_epoch` undoes it."""
        self.snapshot(state)
        rates = np.asarray(rates, np.float64)
        chooser = self.epochs_chooser
        n_threads, probe = chooser.pick()
        use = probe if probe is not None else n_threads
        # The pool's figure is taken after one unmeasured epoch that wakes
        # its threads (asleep through the Python before the call): measured
        # with the wake-up, iris' pool looked slower than one thread (and
        # was left for the fit) where it runs 24 us an epoch to 33.
        wake = use > 1 and (probe is not None or use not in chooser.rate) and len(rates) > 2
        sums = []
        seconds = 0.0
        try:
            for seg in ([rates[:1], rates[1:]] if wake else [rates]):
                plan = EpochPlan(seg, np.empty((len(seg), 3)), np.zeros(2, np.int64),
                                 self.engine.shuffle_state, self.csc_ready)
                timed = not (wake and len(sums) == 0)
                seconds = self._plan(use, opt, state, plan, probe is not None, timed)
                done, diverged = int(plan.status[0]), bool(plan.status[1])
                sums.extend(plan.sums[:done])
                if diverged:
                    break
            done = len(sums)
            if diverged:
                # Back to the start, then the epochs before the diverged one
                # again: the same calls, so the same parameters.
                self.rollback()
                done -= 1
                sums = sums[:done]
                if done:
                    self._plan(use, opt, state, EpochPlan(
                        rates[:done], np.empty((done, 3)), np.zeros(2, np.int64),
                        self.engine.shuffle_state, self.csc_ready), False, False)
        except BaseException:
            self.rollback()
            raise
        self._batch_seconds = seconds / (int(plan.status[0]) * self.n_batches)
        return [(float(a), float(b), int(c)) for a, b, c in sums], diverged

    def _plan(self, n_threads, opt, state, plan, probe, timed=True):
        """One train_batches call of ``plan``'s epochs (``timed`` for the
        thread chooser unless something compiled); returns its seconds."""
        cache = self.engine.input_cache
        if cache is not None:
            cache.csc_in_order = self.csc_ready
        kernel = train_kernels.train_batches
        compiled = compile_notice.compiles[0], len(kernel.overloads)
        t0 = time.perf_counter()
        threads.run_with(n_threads, kernel, self.data, self.model, self.head, self.grad, state,
                         opt, self.sp, self.work, self.bufs, 0, 0, plan)
        seconds = time.perf_counter() - t0
        self.csc_ready = not self.data.shuffle
        if cache is not None:
            cache.csc_in_order = self.csc_ready
        if timed and compiled == (compile_notice.compiles[0], len(kernel.overloads)):
            self.epochs_chooser.record(n_threads, int(plan.status[0]) * self.n, seconds, probe)
        compile_notice.done()
        return seconds

    def pass_slice(self, opt, state, first, last, n_threads):
        """Batches ``first..last-1`` of the pass whose visiting order the
        current shuffle state gives (the state advances as a whole epoch's
        would): one round of data-parallel training (:mod:`fastnn.dask`),
        where a pass is cut into rounds and the parameters are averaged in
        between. Returns the sums of :meth:`epoch` over those batches."""
        data = self.data
        with threads.serialized():
            train_kernels.epoch_begin(data.order, self.engine.shuffle_state, data.shuffle,
                                      self.sp, self.csc_ready, data.batch_size)
        self.csc_ready = not data.shuffle
        self.no_plan.sums[0] = 0.0
        self._run(n_threads, first, last, opt, state, None)
        compile_notice.done()
        return self._sums()

    def _run(self, n_threads, first, last, opt, state, probe):
        """Batches first..last-1 on ``n_threads`` threads, timed for the
        thread chooser (see threads.py; ``probe`` None: not timed); their
        sums continue the epoch's in ``no_plan.sums``."""
        # A call that compiles, or loads the kernel from the disk cache, says
        # nothing about speed.
        compiled = compile_notice.compiles[0], len(train_kernels.train_batches.overloads)
        t0 = time.perf_counter()
        threads.run_with(n_threads, train_kernels.train_batches, self.data, self.model,
                         self.head, self.grad, state, opt, self.sp, self.work, self.bufs,
                         first, last, self.no_plan)
        rows = min(self.n, last * self.data.batch_size) - first * self.data.batch_size
        if probe is not None and compiled == (compile_notice.compiles[0],
                                              len(train_kernels.train_batches.overloads)):
            self.chooser.record(n_threads, rows, time.perf_counter() - t0, probe)


def new_history(validating):
    keys = ["loss", "accuracy", "lr", "seconds"] + (["val_loss", "val_accuracy"]
                                                     if validating else [])
    return {k: [] for k in keys}


def run_epochs(trainer, opt, state, policy, max_epochs, *, history, validate=None,
               progress=None, callbacks=(), owner=None, report=None, loss_scale=1.0,
               classify=True):
    """The epoch loop. Each epoch: the rate from ``policy.learning_rate``,
    a guarded epoch (divergence raises :class:`TrainingDivergedError`),
    ``validate()`` (a dict of extra entries), then the epoch's entries are
    appended to ``history`` together -- an interrupt before that undoes the
    epoch, so the parameters always match the history. Then ``report(epoch,
    record)``, ``policy.after_epoch`` and ``callbacks`` (``f(owner,
    history)``; True stops). The training loss is ``(loss_sum / loss_scale +
    penalty_sum) / rows``."""
    bar = epoch_bar(progress, max_epochs)
    if bar is not None:
        progress = None  # the epoch bar replaces the batch-level one
    try:
        return _epochs(trainer, opt, state, policy, max_epochs, history, validate, progress,
                       callbacks, owner, report, loss_scale, classify, bar)
    finally:
        if bar is not None:
            bar.close()


def _epochs(trainer, opt, state, policy, max_epochs, history, validate, progress, callbacks,
            owner, report, loss_scale, classify, bar):
    n = trainer.n
    # Several epochs per compiled call when nothing needs the model between
    # them, and the policy can tell their rates (and that it cannot stop
    # before the last) in advance.
    ahead = (validate is None and not callbacks and bar is None and progress_reporter(progress)
             is None and hasattr(trainer, "run_ahead") and hasattr(policy, "rates_ahead"))
    i = 0
    while i < max_epochs:
        t0 = time.perf_counter()
        k = trainer.epochs_per_call(max_epochs - i) if ahead else 1
        rates = policy.rates_ahead(i, k) if k > 1 else []
        if len(rates) > 1:
            results, diverged = trainer.run_ahead(opt, state, rates)
        else:
            rates = [policy.learning_rate(i)]
            sums = trainer.guarded_epoch(opt._replace(lr=rates[0]), state, progress)
            results, diverged = ([] if sums is None else [sums]), sums is None
        seconds = (time.perf_counter() - t0) / max(1, len(results) + diverged)
        for sums, lr in zip(results, rates):
            stop = _record_epoch(trainer, policy, history, validate, report, callbacks, owner,
                                 bar, sums, lr, seconds, n, loss_scale, classify, i)
            i += 1
            if stop:
                return history
        if diverged:
            lr = rates[len(results)]
            message = policy.divergence_message(i + 1, lr)
            scale = trainer.input_scale()
            if scale > INPUT_SCALE_WARN:
                message += (f" The inputs reach |x| = {scale:.3g}: scale them first (e.g. "
                            f"to [0, 1] or zero mean and unit variance); no learning rate "
                            f"trains well on such values.")
            raise TrainingDivergedError(message)
        interrupts.check()  # a Ctrl-C during a run of epochs: after their records
    return history


def _record_epoch(trainer, policy, history, validate, report, callbacks, owner, bar, sums, lr,
                  seconds, n, loss_scale, classify, i):
    """Epoch ``i``'s record in ``history`` (validated first), reported;
    returns whether the policy or a callback stops training."""
    loss_sum, pen_sum, correct = sums
    record = {"loss": (loss_sum / loss_scale + pen_sum) / n,
              "accuracy": correct / n if classify else math.nan, "lr": lr,
              "seconds": seconds}
    if validate is not None:
        try:
            record.update(validate())
        except BaseException:
            trainer.rollback()
            raise
    for key, value in record.items():
        history.setdefault(key, []).append(value)
    if report is not None:
        report(i + 1, record)
    if bar is not None:
        bar.set_postfix({k: f"{v:.4f}" for k, v in record.items()
                         if k in ("loss", "accuracy", "val_loss", "val_accuracy")
                         and not math.isnan(v)}, refresh=False)
        bar.update(1)
    stop = policy.after_epoch(record, trainer.model.theta, n)
    for cb in callbacks:
        if cb(owner, history) is True:
            stop = True
    return stop


def epoch_printer(classify, stream=None):
    """``report(epoch, record)`` printing one line per epoch (``verbose``)."""
    def report(epoch, rec):
        line = f"epoch {epoch:3d}  loss {rec['loss']:.4f}"
        if classify:
            line += f"  acc {rec['accuracy']:.4f}"
        if "val_loss" in rec:
            line += f"  val_loss {rec['val_loss']:.4f}"
            line += f"  val_acc {rec['val_accuracy']:.4f}" if classify else ""
        print(line + f"  {rec['seconds']:.2f}s", file=stream or sys.stdout, flush=True)

    return report


def epoch_bar(progress, max_epochs):
    """For ``progress=True`` with tqdm installed: a ``tqdm.auto`` bar over
    the epochs (a widget in Jupyter, a bar on a terminal, nothing when
    stderr is a file or a pipe) whose postfix shows the last epoch's loss
    and accuracy. None otherwise (without tqdm, :class:`ProgressBar` draws
    the batches of each epoch instead)."""
    if progress is not True:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=max_epochs, unit="epoch", desc="fastnn", disable=None, leave=True)


def progress_reporter(progress):
    if progress is None or progress is False:
        return None
    if progress is True:
        return ProgressBar() if sys.stderr.isatty() else None
    if callable(progress):
        return progress
    raise TypeError(f"progress must be True, False or a callable f(done, total), "
                    f"got {progress!r}")


class ProgressBar:
    """A one-line text progress bar on stderr, redrawn in place."""

    def __init__(self, width=30, stream=None):
        self.width = width
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()

    def __call__(self, done, total):
        if done >= total:  # erase the bar: the caller prints the epoch's line
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            return
        filled = self.width * done // total
        elapsed = time.perf_counter() - self.t0
        eta = elapsed * (total - done) / done if done else 0.0
        self.stream.write(f"\r  [{'#' * filled}{'.' * (self.width - filled)}] "
                          f"{done}/{total} batches  {elapsed:5.1f}s  eta {eta:5.1f}s\x1b[K")
        self.stream.flush()


def full_batch_objective(layout, model, head, X, labels, T, l2=0.0, loss_scale=1.0,
                         sample_weight=None):
    """``f(theta) -> (loss, gradient)`` over all of X for a full-batch
    solver (L-BFGS): the mean loss divided by ``loss_scale`` plus
    ``0.5 * l2 * sum(W**2) / rows``, and the gradient of the mean loss plus
    ``l2 * W / rows`` (scikit-learn's objective for ``alpha = l2``), both in
    float64; with ``sample_weight`` the weighted mean, and the sum of the
    weights for ``rows``. Sets ``model.theta`` to each point it is asked
    about."""
    from .memory import EVAL_ROWS

    n = X.shape[0]
    sw = np.empty(0, np.float64) if sample_weight is None else sample_weight
    norm = float(sw.sum()) if sw.size else n
    theta = model.theta
    dtype = theta.dtype
    work = work_buffers(layout, min(n, EVAL_ROWS), dtype)
    grad = aligned_zeros(theta.size, dtype)
    total = np.empty(theta.size, dtype)
    weights = np.zeros(theta.size, bool)
    for l in range(len(layout.sizes) - 1):
        o = int(layout.poff[l])
        weights[o:o + int(layout.sizes[l] * layout.sizes[l + 1])] = True

    # Between calls the solver runs single-threaded (and BLAS threads may
    # spin): the pool's regions then waited on woken or contended threads,
    # and the pool ran 10x slower than one thread on digits. Measure both.
    chooser = threads.ThreadChooser()

    def objective(x):
        theta[...] = x
        current, probe = chooser.pick()
        use = probe if probe is not None else current
        kernel = train_kernels.full_batch_gradient
        args = (X, labels, T, sw, model, head, work, grad, total)
        if not cold_start.ready([("full_batch_gradient", args)],
                                memo=("full_batch", dtype.str, X.flags.writeable)):
            with numpy_engine.one_blas_thread():  # while the kernels compile
                loss = numpy_engine.full_batch_gradient(*args)
            interrupts.check()
            return finish(loss)
        cold_start.compile_notice_ready()
        before = compile_notice.compiles[0], len(kernel.overloads)
        t0 = time.perf_counter()
        loss = threads.run_with(use, kernel, X, labels, T, sw, model, head, work, grad, total)
        if before == (compile_notice.compiles[0], len(kernel.overloads)):
            chooser.record(use, n, time.perf_counter() - t0, probe is not None)
        interrupts.check()
        compile_notice.done()
        return finish(loss)

    def finish(loss):
        W = theta[weights].astype(np.float64)
        g = total.astype(np.float64)
        g[weights] += (l2 / norm) * W
        return loss / loss_scale + 0.5 * l2 * float(W @ W) / norm, g

    return objective
