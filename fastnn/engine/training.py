"""The training engine: one fit's data made ready for the kernels, epochs
run in compiled chunks with rollback on interrupt or divergence, and the one
epoch loop that ``Network.fit``/``partial_fit`` and the scikit-learn
estimators drive. What to do after each epoch (learning rate, stopping,
keeping the best parameters) is delegated to a policy (:mod:`.stopping`).
"""
import contextlib
import math
import threading
import time
from typing import Any, NamedTuple

import numpy as np

from ..kernels.bundles import (BatchBuffers, EpochPlan, Optimizer, OptimizerState, TrainData,
                               is_sparse, no_sparse)
from ..kernels.layout import row_split
from ..runtime import interrupts
from . import backend, inputs, registry, validation
from .progress import SHOWN, close_bar, epoch_bar, progress_reporter
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
        self.batch_seconds = {}       # Trainer.work_key -> seconds per compiled batch
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
        self.batch_seconds = {}
        self._busy = threading.Lock()


def optimizer(name="sgd", lr=0.1, momentum=0.0, nesterov=False, beta1=0.9, beta2=0.999,
              eps=1e-8, l2=0.0, l2_per_row=False, weight_decay=0.01, dropout=None,
              drop_seed=0, clip_norm=None):
    """Checked optimizer settings (:class:`Optimizer`); ``weight_decay`` is
    AdamW's (decoupled) and read by it only. ``dropout``: each layer's rate
    (``validation.dropout_rates``), None for none; ``drop_seed`` seeds the
    masks. ``clip_norm``: the loss gradient's global L2 norm is clipped to
    it before each step (``torch.nn.utils.clip_grad_norm_``); None: never."""
    validation.check_choice("optimizer", name, validation.OPTIMIZERS)
    lr = validation.check_float("lr", lr, 0, low_open=True)
    momentum = validation.check_float("momentum", momentum, 0, 1, high_open=True)
    nesterov = validation.check_bool("nesterov", nesterov)
    beta1 = validation.check_float("beta1", beta1, 0, 1, high_open=True)
    beta2 = validation.check_float("beta2", beta2, 0, 1, high_open=True)
    eps = validation.check_float("eps", eps, 0, low_open=True)
    l2 = validation.check_float("l2", l2, 0)
    weight_decay = validation.check_float("weight_decay", weight_decay, 0)
    if name == "adamw" and lr * weight_decay >= 1:
        raise ValueError(f"lr * weight_decay must be < 1 (each step multiplies the parameters by "
                         f"1 - lr * weight_decay), got {lr} * {weight_decay}")
    rates = np.zeros(0) if dropout is None or not np.any(dropout) else dropout
    return Optimizer(registry.OPTIMIZERS[name].kind, lr, momentum, nesterov, beta1, beta2, eps, l2,
                     bool(l2_per_row), weight_decay, np.ascontiguousarray(rates, np.float64),
                     np.uint64(drop_seed), validation.check_clip_norm(clip_norm))


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
    # the last epoch measured: an epoch of a few quick batches (digits: 9
    # batches of ~0.1 ms) is one call, not nine, each paying ~20-40 us of
    # dispatch and argument unboxing.
    MIN_CHUNK_SECONDS = 0.005
    # Epochs shorter than this run several per compiled call (see
    # run_ahead) when nothing looks at the model between them (no
    # validation, callbacks or progress display): an epoch of iris takes
    # ~40 us, about what Python and dispatch around it would add.
    RUN_AHEAD_EPOCH_SECONDS = 0.002
    # ... and such a call lasts about this long at most (Ctrl-C is noticed,
    # and the thread choice revised, between calls).
    RUN_AHEAD_CALL_SECONDS = 0.02

    def __init__(self, net, X, labels, T, batch_size, shuffle, sample_weight=None):
        """``net``: the :class:`~fastnn.Network` to train (its layout,
        parameters, head and engine state)."""
        layout, model, head, engine = net.layout, net._model(), net.head, net.engine
        n = X.shape[0]
        batch_size = min(validation.check_int("batch_size", batch_size, 1), n)
        shuffle = validation.check_bool("shuffle", shuffle)
        self.model, self.head, self.engine, self.n = model, head, engine, n
        dtype = model.theta.dtype
        split_sparse = row_split(layout.sizes, batch_size, sparse=True)
        self.sp, self.csc_ready, engine.input_cache = inputs.prepare(
            X, dtype, batch_size, shuffle, engine.input_cache,
            csc=not (split_sparse and shuffle))
        self.sparse = is_sparse(self.sp)
        # The NumPy engine (a first run, while the kernels compile) reads a
        # dense X as it is, even when the kernels read its sparse form.
        self.numpy_x = None if inputs.is_scipy_sparse(X) else X
        if inputs.is_scipy_sparse(X):
            X = inputs.dense_placeholder(X, dtype)
        self.work = work_buffers(layout, batch_size, dtype, self.sparse,
                                 split=split_sparse if self.sparse
                                 else row_split(layout.sizes, batch_size),
                                 keep_input=registry.keeps_input(model.acts), masks=True)
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
        # What the work is, for the compiled backend's thread choice.
        self.work_key = (tuple(int(s) for s in layout.sizes), batch_size, dtype.str, self.sparse)
        # A call of train_batches on batches of the current epoch; its sums
        # row holds the epoch's running sums (see train_batches).
        self.no_plan = EpochPlan(np.empty(0, np.float64), np.zeros((1, 3), np.float64),
                                 np.zeros(2, np.int64), engine.shuffle_state, False)
        self._snapshot = None  # what the running epoch changes, as it was before it
        self._saved = None
        self._compiled = None  # the compiled backend, once its kernels can run
        self._pass_memo = None  # pass_slice: (backend, shuffle state before, after)
        # Per batch, the last compiled epoch of this work on this network
        # (an earlier fit's: repeated fit(epochs=1) calls run their single
        # epoch in MIN_CHUNK_SECONDS chunks too, not EPOCH_CHUNKS).
        self._batch_seconds = engine.batch_seconds.get(self.work_key)

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

    def backend(self, opt, state):
        """The backend this epoch runs on: the compiled one once its drivers
        can run without compiling here, NumPy while a helper compiles them
        (:func:`.backend.choose`)."""
        if self._compiled is not None:
            return self._compiled
        data = self.data
        calls = [("epoch_begin", (data.order, self.engine.shuffle_state, data.shuffle,
                                  self.sp, self.csc_ready, data.batch_size)),
                 ("train_batches", (data, self.model, self.head, self.grad, state, opt,
                                    self.sp, self.work, self.bufs, 0, 1, self.no_plan))]
        chosen = backend.choose(calls, memo=("train", data.X.dtype.str, data.X.flags.writeable,
                                             self.sparse), then=self._next_calls())
        if chosen.name == "compiled":
            self._compiled = chosen
            chosen.prepare(self, opt, state)
        return chosen

    def _next_calls(self):
        """The calls a fit likely makes next (validation, predict on dense
        rows like X), for a background compile to do after training's."""
        data, X = self.data, self.data.X
        like_x = np.empty((0, X.shape[1]), X.dtype)
        like_x.setflags(write=X.flags.writeable)
        rows = np.empty(0, np.int64)
        out = np.empty((0, int(self.model.sizes[-1])), X.dtype)
        dense = no_sparse(X.dtype)
        return [("evaluate_batches", (like_x, dense, rows, data.labels, data.T, self.model,
                                      self.head, self.work)),
                ("predict_batches", (like_x, dense, rows, self.model, self.head, self.work,
                                     out))]

    def _cache_follows(self):
        """The input cache's CSC blocks are valid for the next fit exactly
        when they are for this one (set before a call that may rebuild them,
        so an interrupted rebuild leaves them marked invalid, and after)."""
        if self.engine.input_cache is not None:
            self.engine.input_cache.csc_in_order = self.csc_ready

    def epoch(self, opt, state, progress):
        runner = self.backend(opt, state)
        self._pass_memo = None
        self._cache_follows()
        runner.shuffle(self)
        self._cache_follows()
        report = progress_reporter(progress)
        nb = self.n_batches
        step = max(1, -(-nb // self.EPOCH_CHUNKS))
        compiled = runner is self._compiled
        if compiled and self._batch_seconds and report is None:
            step = max(step, int(self.MIN_CHUNK_SECONDS / self._batch_seconds))
        t0 = time.perf_counter()
        self.no_plan.sums[0] = 0.0
        for first in range(0, nb, step):
            last = min(nb, first + step)
            runner.train(self, opt, state, first, last)
            if report is not None:
                report(last, nb)
        if compiled:
            self._set_batch_seconds((time.perf_counter() - t0) / nb)
        return self._sums()

    def _set_batch_seconds(self, seconds):
        self._batch_seconds = self.engine.batch_seconds[self.work_key] = seconds

    def _sums(self):
        """The running sums of the current epoch's batches (see no_plan)."""
        loss, pen, correct = self.no_plan.sums[0]
        return float(loss), float(pen), int(correct)

    def epochs_per_call(self, remaining):
        """How many of the ``remaining`` epochs the next call of
        :meth:`run_ahead` should run: 1 (epoch by epoch) until the kernels
        are running and while an epoch takes more than
        ``RUN_AHEAD_EPOCH_SECONDS``."""
        if not (self._compiled is not None and self._batch_seconds):
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
        self._pass_memo = None
        rates = np.asarray(rates, np.float64)
        runner = self._compiled
        try:
            self._cache_follows()
            sums, diverged, n_threads, seconds = runner.train_epochs(self, opt, state, rates)
            if diverged:
                # Back to the start, then the epochs before the diverged one
                # again: the same calls, so the same parameters.
                self.rollback()
                sums = sums[:-1]
                if sums:
                    self._cache_follows()
                    runner.train_epochs(self, opt, state, rates[:len(sums)], n_threads,
                                        timed=False)
        except BaseException:
            self.rollback()
            raise
        finally:
            self._cache_follows()
        self._set_batch_seconds(seconds / self.n_batches)
        return [(float(a), float(b), int(c)) for a, b, c in sums], diverged

    def pass_slice(self, opt, state, first, last, n_threads=None):
        """Batches ``first..last-1`` of the pass whose visiting order the
        current shuffle state gives (the state advances as a whole epoch's
        would): one round of data-parallel training (:mod:`fastnn.dask`),
        where a pass is cut into rounds and the parameters are averaged in
        between; ``n_threads`` caps the threads (a worker's share). Returns
        the sums of :meth:`epoch` over those batches."""
        runner = self.backend(opt, state)
        before = self.engine.shuffle_state.copy()
        memo = self._pass_memo
        if memo is not None and memo[0] == runner.name and np.array_equal(memo[1], before):
            # This pass's order (and a sparse input's CSC blocks) are still
            # in place from the previous round: rebuilding them every round
            # costs O(rows) per round, more than a short round's batches.
            self.engine.shuffle_state[...] = memo[2]
        else:
            self._pass_memo = None
            runner.shuffle(self)
            self._pass_memo = (runner.name, before, self.engine.shuffle_state.copy())
        self.no_plan.sums[0] = 0.0
        runner.train(self, opt, state, first, last, n_threads)
        return self._sums()


def new_history(validating):
    keys = ["loss", "accuracy", "lr", "seconds"] + (["val_loss", "val_accuracy"]
                                                     if validating else [])
    return {k: [] for k in keys}


class Watch(NamedTuple):
    """What looks at training between epochs, and how epochs are counted."""
    history: dict                # the entries of each epoch are appended here
    validate: Any = None         # () -> dict of extra entries (val_loss, ...), or None
    progress: Any = None         # True, False/None or f(batches_done, batches_total)
    callbacks: tuple = ()        # f(owner, history) after each epoch; True stops
    owner: Any = None            # what callbacks get (the Network)
    report: Any = None           # report(epoch, record), e.g. epoch_printer
    loss_scale: float = 1.0      # the training loss is (loss_sum / loss_scale + penalty) / rows
    classify: bool = True        # False: accuracy is NaN (regression)


def run_epochs(trainer, opt, state, policy, max_epochs, watch):
    """The epoch loop. Each epoch: the rate from ``policy.learning_rate``,
    a guarded epoch (divergence raises :class:`TrainingDivergedError`),
    ``watch.validate()``, then the epoch's entries are appended to
    ``watch.history`` together -- an interrupt before that undoes the
    epoch, so the parameters always match the history. Then
    ``watch.report``, ``policy.after_epoch`` and the callbacks. Returns the
    history."""
    bar = epoch_bar(watch.progress, max_epochs)
    if bar is not None:
        watch = watch._replace(progress=None)  # the epoch bar replaces the batch-level one
    try:
        history = _EpochLoop(trainer, opt, state, policy, watch, bar).run(max_epochs)
    except BaseException as error:
        close_bar(bar, error)
        raise
    close_bar(bar)
    return history


class _EpochLoop:
    def __init__(self, trainer, opt, state, policy, watch, bar):
        self.trainer, self.opt, self.state, self.policy = trainer, opt, state, policy
        self.watch, self.bar = watch, bar

    def run(self, max_epochs):
        trainer, policy, watch = self.trainer, self.policy, self.watch
        # Several epochs per compiled call when nothing needs the model
        # between them, and the policy can tell their rates (and that it
        # cannot stop before the last) in advance.
        ahead = (watch.validate is None and not watch.callbacks and self.bar is None
                 and progress_reporter(watch.progress) is None
                 and hasattr(trainer, "run_ahead") and hasattr(policy, "rates_ahead"))
        i = 0
        while i < max_epochs:
            t0 = time.perf_counter()
            k = trainer.epochs_per_call(max_epochs - i) if ahead else 1
            rates = policy.rates_ahead(i, k) if k > 1 else []
            if len(rates) > 1:
                results, diverged = trainer.run_ahead(self.opt, self.state, rates)
            else:
                rates = [policy.learning_rate(i)]
                sums = trainer.guarded_epoch(self.opt._replace(lr=rates[0]), self.state,
                                             watch.progress)
                results, diverged = ([] if sums is None else [sums]), sums is None
            seconds = (time.perf_counter() - t0) / max(1, len(results) + diverged)
            for sums, lr in zip(results, rates):
                stop = self.record(sums, lr, seconds, i)
                i += 1
                if stop:
                    return watch.history
            if diverged:
                raise TrainingDivergedError(self.divergence(i, rates[len(results)]))
            interrupts.check()  # a Ctrl-C during a run of epochs: after their records
        return watch.history

    def divergence(self, i, lr):
        message = self.policy.divergence_message(i + 1, lr)
        scale = self.trainer.input_scale()
        if scale > INPUT_SCALE_WARN:
            message += (f" The inputs reach |x| = {scale:.3g}: scale them first (e.g. "
                        f"to [0, 1] or zero mean and unit variance); no learning rate "
                        f"trains well on such values.")
        return message

    def record(self, sums, lr, seconds, i):
        """Epoch ``i``'s record in the history (validated first), reported;
        returns whether the policy or a callback stops training."""
        watch, n, bar = self.watch, self.trainer.n, self.bar
        loss_sum, pen_sum, correct = sums
        record = {"loss": (loss_sum / watch.loss_scale + pen_sum) / n,
                  "accuracy": correct / n if watch.classify else math.nan, "lr": lr,
                  "seconds": seconds}
        if watch.validate is not None:
            try:
                record.update(watch.validate())
            except BaseException:
                self.trainer.rollback()
                raise
        for key, value in record.items():
            watch.history.setdefault(key, []).append(value)
        if watch.report is not None:
            watch.report(i + 1, record)
        if bar is not None:
            bar.set_postfix({k: f"{v:.4f}" for k, v in record.items()
                             if k in SHOWN and not math.isnan(v)}, refresh=False)
            bar.update(1)
        stop = self.policy.after_epoch(record, self.trainer.model.theta, n)
        for cb in watch.callbacks:
            if cb(watch.owner, watch.history) is True:
                stop = True
        return stop


def full_batch_objective(net, X, labels, T, l2=0.0, loss_scale=1.0, sample_weight=None):
    """``f(theta) -> (loss, gradient)`` over all of X for a full-batch
    solver (L-BFGS): the mean loss divided by ``loss_scale`` plus
    ``0.5 * l2 * sum(W**2) / rows``, and the gradient of the mean loss plus
    ``l2 * W / rows`` (scikit-learn's objective for ``alpha = l2``), both in
    float64; with ``sample_weight`` the weighted mean, and the sum of the
    weights for ``rows``. Sets ``net.theta`` to each point it is asked
    about."""
    from .memory import EVAL_ROWS

    layout, model, head = net.layout, net._model(), net.head
    n = X.shape[0]
    sw = np.empty(0, np.float64) if sample_weight is None else sample_weight
    norm = float(sw.sum()) if sw.size else n
    theta = model.theta
    dtype = theta.dtype
    work = work_buffers(layout, min(n, EVAL_ROWS), dtype,
                        keep_input=registry.keeps_input(model.acts))
    grad = aligned_zeros(theta.size, dtype)
    total = np.empty(theta.size, dtype)
    weights = np.zeros(theta.size, bool)
    for l in range(len(layout.sizes) - 1):
        o = int(layout.poff[l])
        weights[o:o + int(layout.sizes[l] * layout.sizes[l + 1])] = True

    def objective(x):
        theta[...] = x
        args = (X, labels, T, sw, model, head, work, grad, total)
        runner = backend.choose([("full_batch_gradient", args)],
                                memo=("full_batch", dtype.str, X.flags.writeable))
        return finish(runner.full_batch(*args))

    def finish(loss):
        W = theta[weights].astype(np.float64)
        g = total.astype(np.float64)
        g[weights] += (l2 / norm) * W
        return loss / loss_scale + 0.5 * l2 * float(W @ W) / norm, g

    return objective
