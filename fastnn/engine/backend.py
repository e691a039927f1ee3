"""The engine's one seam with what runs the math: two backends.

A backend runs named operations on the kernels' argument bundles
(:mod:`fastnn.kernels.bundles`) and changes the same arrays in place:

* ``shuffle(trainer)``: the epoch's visiting order;
* ``train(trainer, opt, state, first, last, n_threads=None)``: batches
  ``first..last-1`` of the epoch, their sums added to ``trainer.no_plan``'s;
* ``train_epochs(trainer, opt, state, rates, n_threads=None, timed=True)``:
  whole epochs at those learning rates in one call; returns (each epoch's
  sums up to a diverged one, whether it diverged, threads, seconds per epoch);
* ``evaluate(X, sp, rows, labels, T, model, head, work)``: (loss sum, rows right);
* ``predict(X, sp, rows, model, head, work, out)``: the head's output (or the
  logits, ``head.code < 0``) into ``out``; returns the count of NaN/inf in X;
* ``full_batch(X, labels, T, w, model, head, work, grad, total)``: the mean
  loss over X, its gradient in ``total``;
* ``scan(a)``: (non-zeros per row, a fingerprint or None, whether a value
  is NaN or inf);
* ``csr_fill(X, indptr, indices, values)``: a dense X's CSR arrays.

:class:`NumpyBackend` is :mod:`.numpy_engine`. The compiled one is
:mod:`fastnn.runtime.compiled`; only it knows about cold starts, the
compile helper, thread choice, compile notices and interrupt checks.
:func:`choose` picks one for a piece of work: the compiled backend when its
kernels can run without compiling here, else NumPy (while a helper compiles
them). ``FASTNN_BACKEND=numpy`` runs everything on NumPy, ``compiled``
everything compiled (compiling in-process when needed). A child forked
from a process whose OpenMP pool has run uses NumPy: GNU OpenMP would
abort it at its first parallel region.
"""
import contextlib
import os
import time

import numpy as np

from ..kernels.bundles import EpochPlan, no_sparse
from . import numpy_engine

MODES = ("auto", "numpy", "compiled")


def mode():
    """``FASTNN_BACKEND``: auto (default), numpy or compiled."""
    value = os.environ.get("FASTNN_BACKEND", "auto") or "auto"
    if value not in MODES:
        raise ValueError(f"FASTNN_BACKEND must be one of {MODES}, got {value!r}")
    return value


class NumpyBackend:
    """The math in NumPy (:mod:`.numpy_engine`): no compiling. ``beside_helper``:
    a helper process compiles the kernels meanwhile, so NumPy's BLAS keeps
    to one thread (its spinning threads would take the helper's core)."""

    name = "numpy"

    def __init__(self, beside_helper=False):
        self.beside_helper = beside_helper

    def _blas(self):
        if self.beside_helper:
            return numpy_engine.one_blas_thread()
        return contextlib.nullcontext()

    def shuffle(self, trainer):
        d = trainer.data
        numpy_engine.epoch_begin(d.order, trainer.engine.shuffle_state, d.shuffle, trainer.sp,
                                 trainer.csc_ready, d.batch_size)
        # NumPy does not build the sparse batches' CSC blocks: stale now.
        trainer.csc_ready = False

    def train(self, trainer, opt, state, first, last, n_threads=None):
        self._train(trainer, opt, state, trainer.no_plan, first, last)

    def train_epochs(self, trainer, opt, state, rates, n_threads=None, timed=True):
        plan = EpochPlan(np.asarray(rates, np.float64), np.empty((len(rates), 3)),
                         np.zeros(2, np.int64), trainer.engine.shuffle_state, False)
        t0 = time.perf_counter()
        self._train(trainer, opt, state, plan, 0, 0)
        done, diverged = int(plan.status[0]), bool(plan.status[1])
        trainer.csc_ready = False
        return list(plan.sums[:done]), diverged, n_threads, (time.perf_counter() - t0) / done

    def _train(self, trainer, opt, state, plan, first, last):
        # A dense X is read as it is, even where the kernels read its sparse form.
        dense = trainer.numpy_x is not None
        data = trainer.data._replace(X=trainer.numpy_x) if dense else trainer.data
        with self._blas():
            numpy_engine.train_batches(data, trainer.model, trainer.head, trainer.grad, state,
                                       opt, no_sparse(trainer.model.theta.dtype) if dense
                                       else trainer.sp, trainer.work,
                                       trainer.bufs, first, last, plan)

    def evaluate(self, X, sp, rows, labels, T, model, head, work):
        with self._blas():
            return numpy_engine.evaluate_batches(X, sp, rows, labels, T, model, head, work)

    def predict(self, X, sp, rows, model, head, work, out):
        with self._blas():
            return numpy_engine.predict_batches(X, sp, rows, model, head, work, out)

    def full_batch(self, X, labels, T, w, model, head, work, grad, total):
        with self._blas():
            return numpy_engine.full_batch_gradient(X, labels, T, w, model, head, work, grad,
                                                    total)

    def scan(self, a):
        return (np.count_nonzero(a, axis=1).astype(np.int64), None,
                not np.isfinite(a).all())

    def csr_fill(self, X, indptr, indices, values):
        nonzero = X != 0
        indices[:] = np.flatnonzero(nonzero) % X.shape[1]  # row-major: each row's columns in order
        values[:] = X[nonzero]


NUMPY = NumpyBackend()
_NUMPY_BESIDE_HELPER = NumpyBackend(beside_helper=True)


def compiled():
    """The compiled backend (imports Numba and the kernels)."""
    from ..runtime.compiled import BACKEND
    return BACKEND


def choose(calls, memo=None, then=()):
    """The backend for work that makes the kernel ``calls`` (``(name,
    args)``, see :func:`fastnn.runtime.cold_start.ready`), and likely the
    ``then`` calls next. ``memo``: a cheap key of the arguments' types
    under which a "compiled" answer is remembered."""
    m = mode()
    if m == "numpy":
        return NUMPY
    backend = compiled()
    if backend.pool_unusable():
        return NUMPY  # a fork of a process whose OpenMP pool ran: see runtime/threads.py
    if m == "compiled" or backend.ready(calls, memo, then):
        return backend
    return _NUMPY_BESIDE_HELPER
