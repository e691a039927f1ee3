"""Training, prediction and search beyond one process, on Dask.

Needs ``dask[distributed]`` (``pip install "fastnn[dask]"``); imported only
when used.

* :func:`fit`: data-parallel training by synchronous averaging. The rows of
  ``X`` are cut into chunks (as many as the dask array's row chunks) that
  each hold an equal share of every batch (:func:`batch_shares`: with 4
  chunks and ``batch_size=100``, 25 rows of each batch from each chunk), and
  each chunk is persisted once on a worker. Every round, each chunk's task,
  run where the chunk is, trains a copy of the network on its shares of
  ``sync_every`` consecutive batches; the driver averages the changes to the
  parameters and to the optimizer state (momentum velocity, Adam moments)
  weighted by the rows each chunk trained, and the next round starts from
  there. An epoch is one pass over every chunk; the epoch loop itself is
  fastnn's own (:func:`fastnn.engine.training.run_epochs`): learning-rate
  schedules, validation, early stopping (on the averaged model), callbacks
  and the history behave as in ``Network.fit``.

  The default ``sync_every=1`` is a round per step: averaging one SGD or
  momentum step from each chunk's share *is* the step on the whole batch
  (the update is linear in the gradient), so the fit is ``Network.fit``'s
  mini-batch SGD on ``batch_size``-row batches, as PyTorch's
  DistributedDataParallel is (tested: the same parameters to rounding as
  ``Network.fit`` on the same batches). Adam's and clipping's steps are
  not linear in the gradient: for them the averaged step is close to, not
  equal to, the whole batch's. Fewer rounds (``sync_every`` > 1: "local
  SGD") send the parameters less often, but a chunk's steps on its small
  share of a batch are noisier than the whole batch's, and the chunks
  drift apart between averagings: the model learns less per epoch, more
  so with more chunks. Measured on MNIST (the user guide's table): 2
  chunks averaged once an epoch match one process; 8 chunks lose 1-3
  points after 3 epochs; a round per step matches one process with 2-16
  chunks.
* :func:`predict` / :func:`predict_proba`: dask arrays computed block by
  block where the blocks are, the network sent once per worker.
* Search: ``fastnn.MLPClassifier``/``MLPRegressor`` are plain scikit-learn
  estimators, so ``GridSearchCV``/``RandomizedSearchCV`` run on Dask with
  ``joblib.parallel_backend("dask")``. Start each worker with one Numba
  thread per Dask thread (``NUMBA_NUM_THREADS``; :func:`local_cluster` does)
  and warm its kernel cache once (``python -m fastnn compile`` where the
  workers run, or ``client.run(fastnn.runtime.warmup.compile_configuration,
  "float32")``).

Determinism and faults: a round is a pure function of (parameters,
optimizer state, chunk, shuffle state, batch range), so for a fixed seed
and chunking the result does not depend on which worker ran what, and a
round lost with a killed worker is simply run again (``retries``); chunks
built from in-memory NumPy arrays keep their lineage (``from_array``), so
Dask recomputes a lost chunk elsewhere. With one chunk and ``sync_every=1``
the rounds are exactly ``Network.fit``'s batches (tested).

* ``fit(..., optimizer="lbfgs")``: exact full-batch L-BFGS (scipy's
  L-BFGS-B on the driver), as Spark MLlib trains its perceptron: at each
  point the solver asks about, every chunk's task computes its rows' mean
  loss and gradient where the chunk is, and the driver combines them
  weighted by rows and adds the L2 term. The objective is the one the
  estimators' ``solver="lbfgs"`` minimises in one process
  (:func:`fastnn.engine.training.full_batch_objective`), so the fit equals
  the single-process one to rounding; only parameters (out) and gradients
  (back) cross the network, one of each per chunk and evaluation.

Why parameters rather than gradients cross the network: for SGD it is the
same traffic as a gradient all-reduce through the driver (one vector each
way per chunk and round; momentum adds its velocity, Adam its two
moments), the driver needs no optimizer of its own, and ``sync_every`` > 1
is the same round with more batches.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..engine import training, validation
from ..engine.progress import epoch_printer
from ..kernels.bundles import OptimizerState

__all__ = ["fit", "lbfgs", "predict", "predict_proba", "from_npy", "local_cluster",
           "batch_shares"]

RETRIES = 3  # reruns of a round whose worker died


# ---------------------------------------------------------------- clients
def local_cluster(n_workers: int | None = None, **kwargs: Any) -> Any:
    """A ``distributed.LocalCluster`` suited to fastnn.

    One single-threaded worker process per core, each with one Numba
    thread (no oversubscription: the workers already use every core).

    Parameters
    ----------
    n_workers : int or None, default=None
        Worker processes (default: one per core).
    **kwargs
        Passed to ``LocalCluster`` (``threads_per_worker``, ``env``, ...).

    Returns
    -------
    distributed.LocalCluster
        The cluster; ``distributed.Client(cluster)`` connects to it.
    """
    from distributed import LocalCluster

    kwargs.setdefault("threads_per_worker", 1)
    kwargs.setdefault("processes", True)
    kwargs.setdefault("dashboard_address", ":0")
    env = dict(kwargs.pop("env", {}) or {})
    env.setdefault("NUMBA_NUM_THREADS", str(kwargs["threads_per_worker"]))
    env.setdefault("OMP_NUM_THREADS", str(kwargs["threads_per_worker"]))
    return LocalCluster(n_workers=n_workers or os.cpu_count() or 1, env=env, **kwargs)


def _get_client(client):
    """(client, owned): the given client, the current one, or a new local
    cluster's (``owned``: close it afterwards)."""
    from distributed import Client, get_client

    if client is not None:
        if getattr(client, "status", "running") not in ("running", "connecting"):
            raise ValueError(f"the Dask client is {client.status}: pass an open client "
                             f"(or client=None for a local cluster)")
        return client, None
    try:
        return get_client(), None
    except ValueError:
        cluster = local_cluster()
        return Client(cluster), cluster


# ------------------------------------------------------------------- data
def _as_dask(name, a, rows_per_chunk=None):
    import dask.array as da

    if isinstance(a, da.Array):
        return a
    a = np.asarray(a)
    if a.ndim == 0:
        raise ValueError(f"{name} must be an array of samples, got a scalar")
    chunks = (rows_per_chunk or a.shape[0] or 1,) + tuple(-1 for _ in a.shape[1:])
    # from_array keeps the data in the graph: a chunk lost with a worker is
    # rebuilt from it (a scattered array could not be).
    return da.from_array(a, chunks=chunks)


def _load_rows(path, start, stop):
    return np.array(np.load(path, mmap_mode="r")[start:stop])


def from_npy(path: str | os.PathLike, rows_per_chunk: int) -> Any:
    """A dask array over a ``.npy`` file whose chunks the workers read.

    Each chunk is memory-mapped and read by the worker that computes it:
    the data never passes through the client or one machine's memory as a
    whole. Every worker needs the file at ``path`` (a shared file system).

    Parameters
    ----------
    path : str or path-like
        The ``.npy`` file.
    rows_per_chunk : int
        Rows of each chunk.

    Returns
    -------
    dask array
        The file's array, chunked by rows.
    """
    import dask
    import dask.array as da

    path = os.fspath(path)
    head = np.load(path, mmap_mode="r")  # reads the header only
    shape, dtype = head.shape, head.dtype
    del head
    rows_per_chunk = validation.check_int("rows_per_chunk", rows_per_chunk, 1)
    parts = []
    for start in range(0, shape[0], rows_per_chunk):
        stop = min(shape[0], start + rows_per_chunk)
        part = dask.delayed(_load_rows, pure=True)(path, start, stop)
        parts.append(da.from_delayed(part, (stop - start,) + shape[1:], dtype))
    return da.concatenate(parts, axis=0)


def _check_rows(X, y):
    if X.ndim != 2:
        raise ValueError(f"x must be 2-D (samples, features), got shape {X.shape}")
    if any(math.isnan(c) for c in X.chunks[0]) or (
            y is not None and any(math.isnan(c) for c in y.chunks[0])):
        raise ValueError("x and y need known chunk sizes: call .compute_chunk_sizes() on them")
    if y is not None and y.shape[0] != X.shape[0]:
        raise ValueError(f"x has {X.shape[0]} samples but y has {y.shape[0]}")
    X = X.rechunk({1: -1})  # a chunk holds whole rows
    if y is not None and y.chunks[0] != X.chunks[0]:
        y = y.rechunk({0: X.chunks[0]})  # aligned with X's row chunks
    if y is not None and y.ndim == 2:
        y = y.rechunk({1: -1})
    return X, y


def batch_shares(n_rows: int, n_chunks: int, batch_size: int) -> tuple[list[int], list[int]]:
    """How :func:`fit` cuts the rows: chunks that share every batch.

    Every step of a pass takes exactly ``batch_size`` rows over the chunks
    (the last step ``n_rows - (steps - 1) * batch_size``), as
    ``Network.fit``'s batches do. Shares differ by at most one row; with
    fewer rows per batch than chunks, fewer chunks (one row each).

    Parameters
    ----------
    n_rows : int
        Rows in all.
    n_chunks : int
        Chunks wanted.
    batch_size : int
        Rows per step over all chunks.

    Returns
    -------
    rows : list of int
        Rows of each chunk.
    shares : list of int
        Each chunk's rows in every batch.
    """
    k = min(n_chunks, batch_size)
    steps = -(-n_rows // batch_size)
    shares = [batch_size // k + (i < batch_size % k) for i in range(k)]
    short = steps * batch_size - n_rows  # missing from the last step, spread evenly
    rows = [s * steps - (short // k + (i < short % k)) for i, s in enumerate(shares)]
    kept = [(r, s) for r, s in zip(rows, shares) if r > 0]
    return [r for r, _ in kept], [s for _, s in kept]


def _balanced(X, y, batch_size):
    """X, y re-cut by :func:`batch_shares` (neighbouring chunks exchange the
    rows their boundaries move by, once per fit), and each chunk's batch."""
    rows, shares = batch_shares(int(X.shape[0]), len(X.chunks[0]), batch_size)
    if tuple(rows) != tuple(X.chunks[0]):
        X = X.rechunk({0: tuple(rows)})
        y = y.rechunk({0: tuple(rows)})
    return X, y, shares


# ----------------------------------------------------------------- rounds
# Per worker process: the trainer of each (fit, chunk), so rounds after the
# first skip checking and preparing the chunk (a few of the latest fits).
_TRAINERS = {}
_OBJECTIVES = {}  # the same for exact L-BFGS: (fit, chunk) -> (objective, rows)
_TRAINERS_LOCK = threading.Lock()
_KEEP_FITS = 4


def _cached(store, key, build):
    """``store[key]`` (key: (fit, chunk)), made by ``build()`` on first use;
    only the latest few fits' entries are kept."""
    with _TRAINERS_LOCK:
        entry = store.get(key)
        if entry is None:
            fits = list(dict.fromkeys(f for f, _ in store))
            for old in fits[:-_KEEP_FITS + 1]:
                for k in [k for k in store if k[0] == old]:
                    del store[k]
    if entry is None:
        entry = build()
        with _TRAINERS_LOCK:
            store[key] = entry
    return entry


def _chunk_trainer(fit_id, index, net, x, y, batch_size, shuffle):
    if net is None:
        with _TRAINERS_LOCK:
            return _TRAINERS.get((fit_id, index), NEED_NETWORK)

    def build():
        # Its own copy: chunks on one worker share the network object they receive.
        own = copy.deepcopy(net)
        X = own._check_x(x, check_finite=False)
        labels, T = own._check_y(y, X.shape[0])
        return own, own._trainer(X, labels, T, batch_size, shuffle)
    return _cached(_TRAINERS, (fit_id, index), build)


def _forget(fit_id):
    """Drop a finished fit's chunk trainers and objectives (run on every worker)."""
    with _TRAINERS_LOCK:
        for store in (_TRAINERS, _OBJECTIVES):
            for key in [k for k in store if k[0] == fit_id]:
                del store[key]


def _worker_threads():
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except Exception:
        return 1


class RoundState(NamedTuple):
    """What a round starts from (sent to each chunk) and, with the chunk's
    own shuffle stream, what it ends with."""
    theta: np.ndarray          # the parameters
    vel: np.ndarray            # momentum velocity / Adam's first moment
    sq: np.ndarray             # Adam's second moment (empty for SGD)
    step: np.ndarray           # (1,) int64: updates made
    shuffle_state: np.ndarray  # the chunk's shuffle stream at its pass's start (after: its end)


class RoundTask(NamedTuple):
    """One chunk's share of a round: batches ``first..last-1`` of its pass."""
    fit_id: str
    index: int                 # the chunk
    opt: Any                   # the Optimizer
    batch_size: int
    shuffle: bool
    first: int
    last: int


class RoundResult(NamedTuple):
    state: RoundState
    sums: tuple                # (loss sum, penalty sum, rows right) of the batches run
    rows: int                  # rows trained


# A round's task sent without the network (its chunk's trainer was built on
# the worker in an earlier round) that lands on a worker without that
# trainer, e.g. rerun after a worker died: the driver sends it again with it.
NEED_NETWORK = "fastnn-dask-need-network"


class BadChunk(NamedTuple):
    """A chunk's data cannot be trained on (a NaN, a bad label): returned,
    not raised, since rerunning the round (as for a lost worker) fails the
    same way."""
    error: str


def _chunk_round(task, net, block, start):
    """Run ``task`` (a :class:`RoundTask`) on a worker, from ``start`` (a
    :class:`RoundState`), on the chunk ``block`` = (x, y)."""
    x, y = block
    try:
        built = _chunk_trainer(task.fit_id, task.index, net, x, y, task.batch_size,
                               task.shuffle)
    except (ValueError, TypeError) as e:
        return BadChunk(str(e))
    if isinstance(built, str):  # NEED_NETWORK
        return NEED_NETWORK
    net, trainer = built
    net.theta[...] = start.theta
    net.engine.shuffle_state[...] = start.shuffle_state
    state = OptimizerState(start.vel.copy(), start.sq.copy(), start.step.copy())
    sums = trainer.pass_slice(task.opt, state, task.first, task.last, _worker_threads())
    rows = min(trainer.n, task.last * task.batch_size) - task.first * task.batch_size
    return RoundResult(RoundState(net.theta.copy(), state.vel, state.sq, state.step,
                                  net.engine.shuffle_state.copy()), sums, rows)


def _or_none(a):
    """None for an all-zero (non-empty) array, else the array."""
    return None if a.size and not a.any() else a


class GroupResult(NamedTuple):
    """A worker's chunks' round, summed where they ran: the driver gets one
    vector per worker and round, whatever the number of chunks there."""
    rows: int                  # rows trained by these chunks
    moves: tuple               # (theta, vel, sq): float64 sums of rows_i * (chunk's - start),
    #                            None where no chunk changed it (e.g. vel in plain SGD)
    step: int                  # the largest update count reached
    chunks: tuple              # per chunk: (index, shuffle state after, sums (loss, penalty, right))


def _group_round(tasks, net, blocks, common, streams):
    """:func:`_chunk_round` for each of a worker's chunks, from the
    ``common`` start with each chunk's own shuffle stream; a
    :class:`GroupResult`, or the first chunk's :class:`BadChunk` /
    ``NEED_NETWORK`` with its index."""
    common = common._replace(**{f: np.zeros_like(common.theta) for f in ("vel", "sq")
                                if getattr(common, f) is None})
    starts = [np.asarray(a, np.float64) for a in (common.theta, common.vel, common.sq)]
    moves = [np.zeros(a.shape, np.float64) for a in starts]
    changed = [False, False, False]
    rows, step, chunks = 0, 0, []
    for task, block, stream in zip(tasks, blocks, streams):
        res = _chunk_round(task, net, block, common._replace(shuffle_state=stream))
        if not isinstance(res, RoundResult):
            return task.index, res
        ends = (res.state.theta, res.state.vel, res.state.sq)
        for k in range(3):
            if ends[k].size and (changed[k] or np.any(ends[k] != common[k])):
                changed[k] = True
                moves[k] += res.rows * (ends[k] - starts[k])
        rows += res.rows
        step = max(step, int(res.state.step[0]))
        chunks.append((task.index, res.state.shuffle_state, res.sums))
    return GroupResult(rows, tuple(m if c else None for m, c in zip(moves, changed)), step,
                       tuple(chunks))


class _DaskTrainer:
    """What :func:`fastnn.engine.training.run_epochs` needs of a trainer, with an
    epoch run as rounds of model averaging over the chunks."""

    def __init__(self, client, net, X, y, shares, shuffle, sync_every):
        self.client, self.net, self.X = client, net, X
        self.model = net._model()
        self.n = int(X.shape[0])
        self.shares = shares
        self.shuffle = shuffle
        self.sizes = sizes = [int(c) for c in X.chunks[0]]
        self.batches = [-(-s // b) for s, b in zip(sizes, shares)]
        self.sync_every = sync_every
        self.fit_id = uuid.uuid4().hex
        xs = X.to_delayed().ravel().tolist()
        ys = y.to_delayed().ravel().tolist()
        # The chunks stay on the workers; every round's tasks run where they are.
        self.blocks = client.compute(list(zip(xs, ys)))
        seed = net.engine.shuffle_state
        # Chunk 0 continues the network's own shuffling stream (one chunk
        # then trains exactly as Network.fit); the others get their own.
        self.streams = [seed.copy()] + [
            np.random.SeedSequence([int(seed[0]), i]).generate_state(1, np.uint64)
            for i in range(1, len(sizes))]
        # The network goes with each round's task (its structure builds the
        # chunk's trainer on first use), not scattered: scattered data has no
        # lineage, and a worker killed holding it cancelled the round ("lost
        # dependencies") instead of rerunning it.
        self._snapshot = None
        self.epochs_done = 0
        # Chunks whose worker has built their trainer: their tasks go
        # without the network (it is as large as the parameters).
        self.built = set()

    def guarded_epoch(self, opt, state, progress):
        theta = self.net.theta
        self._state = state
        self._snapshot = (theta.copy(), [a.copy() for a in state],
                          [s.copy() for s in self.streams])
        return training.guarded(lambda: self._epoch(opt, state, progress), self.rollback, theta)

    def _epoch(self, opt, state, progress):
        totals = [0.0, 0.0, 0]
        after = list(self.streams)
        bounds = self.round_bounds(self.epochs_done, max(self.batches))
        rounds = len(bounds)
        groups = self._groups()
        for r, (first, stop) in enumerate(bounds):
            # An all-zero state (plain SGD's velocity, every state before the
            # first step) goes as None: the worker makes the zeros.
            common = RoundState(self.net.theta, _or_none(state.vel), _or_none(state.sq),
                                state.step, None)
            work = [(where, [i for i in chunks if first < self.batches[i]])
                    for where, chunks in groups]
            work = [(where, chunks) for where, chunks in work if chunks]  # others' passes are over
            futures = [self._submit(opt, chunks, first, stop, common, r, where)
                       for where, chunks in work]
            parts = []
            for (where, chunks), part in zip(work, self.client.gather(futures)):
                while not isinstance(part, GroupResult):
                    i, problem = part
                    if isinstance(problem, BadChunk):
                        first_row = sum(self.sizes[:i])
                        raise ValueError(f"chunk {i} (rows {first_row}-"
                                         f"{first_row + self.sizes[i] - 1}): {problem.error}")
                    # NEED_NETWORK: rerun on a worker that never trained these chunks.
                    self.built.difference_update(chunks)
                    part = self._submit(opt, chunks, first, stop, common, r, None).result()
                self.built.update(chunks)
                parts.append(part)
            rows = sum(part.rows for part in parts)
            for k, target in enumerate((self.net.theta, state.vel, state.sq)):
                moves = [part.moves[k] for part in parts if part.moves[k] is not None]
                if moves:
                    # One rounding, in float64: a step on many chunks lands
                    # where the step on their rows' whole batch does.
                    target[...] = target.astype(np.float64) + sum(moves) / rows
            state.step[...] = max(part.step for part in parts)
            for part in parts:
                for i, stream, sums in part.chunks:
                    after[i] = stream
                    for k in range(3):
                        totals[k] += sums[k]
            if progress is not None and callable(progress):
                progress(r + 1, rounds)
        self.streams = after
        self.epochs_done += 1
        return tuple(totals)

    def round_bounds(self, epoch, steps):
        k = self.sync_every
        return [(a, min(steps, a + k)) for a in range(0, steps, k)]

    def _groups(self):
        """[(worker address, chunks held there)]: a round sends one task per
        worker, which trains its chunks one after another, instead of one
        per chunk (a task costs a scheduler round trip, ~15 ms here, more
        than a short round's training)."""
        from distributed import wait

        wait(self.blocks)
        holders = self.client.who_has(self.blocks)
        by_worker = {}
        for i, block in enumerate(self.blocks):
            where = sorted(holders.get(block.key, ())) or [None]
            by_worker.setdefault(where[0], []).append(i)
        return sorted(by_worker.items(), key=lambda item: item[1])

    def _submit(self, opt, chunks, first, stop, common, r, where):
        tasks = [RoundTask(self.fit_id, i, opt, self.shares[i], self.shuffle, first,
                           min(self.batches[i], stop)) for i in chunks]
        # The network (as large as the parameters) only where a chunk's
        # trainer is still to be built.
        net = None if all(i in self.built for i in chunks) else self.net
        placed = {} if where is None else dict(workers=[where], allow_other_workers=True)
        return self.client.submit(
            _group_round, tasks, net, [self.blocks[i] for i in chunks], common,
            [self.streams[i] for i in chunks], pure=False, retries=RETRIES,
            key=f"fastnn-round-{self.fit_id}-{r}-{chunks[0]}-{uuid.uuid4().hex[:8]}", **placed)

    def rollback(self):
        theta, state_arrays, streams = self._snapshot
        self.net.theta[...] = theta
        for dst, src in zip(self._state, state_arrays):
            dst[...] = src
        self.streams = streams

    def input_scale(self):
        import dask.array as da

        return float(da.fabs(self.X).max().compute())


# ------------------------------------------------------ exact full batch
def _chunk_objective(fit_id, index, net, block, loss_scale):
    def build():
        own = copy.deepcopy(net)
        x, y = block[:2]
        X = own._check_x(x)
        if not isinstance(X, np.ndarray):
            X = np.ascontiguousarray(X.toarray())  # the full-batch objective is dense
        labels, T = own._check_y(y, X.shape[0])
        sw = None
        if len(block) > 2:
            sw = validation.check_sample_weight(block[2], X.shape[0])
        norm = float(X.shape[0] if sw is None else sw.sum())
        objective = training.full_batch_objective(own, X, labels, T, loss_scale=loss_scale,
                                                  sample_weight=sw)
        return objective, norm
    return _cached(_OBJECTIVES, (fit_id, index), build)


def _chunk_loss_grad(fit_id, index, net, block, theta, loss_scale):
    """A chunk's mean loss and its gradient (float64) at ``theta``, and its
    row count (or sum of sample weights), computed where the chunk is."""
    try:
        objective, norm = _chunk_objective(fit_id, index, net, block, loss_scale)
    except (ValueError, TypeError) as e:
        return BadChunk(str(e))
    loss, grad = objective(theta)
    return loss, grad, norm


def lbfgs(client: Any, net: Any, X: Any, y: Any, sample_weight: Any = None, *,
          max_iter: int = 200, max_fun: int = 15000, l2: float = 0.0, tol: float = 1e-4,
          loss_scale: float = 1.0, callback: Callable | None = None) -> Any:
    """Exact full-batch L-BFGS-B over the row chunks of dask arrays.

    Minimises the estimators' objective (see
    :func:`fastnn.engine.training.full_batch_objective`) with scipy on this
    process; each chunk's loss and gradient are computed on the worker
    holding it, and only parameters and gradients cross the network.

    Parameters
    ----------
    client : distributed.Client
        The cluster.
    net : fastnn.Network
        The network; ``net.theta`` is set to the solution.
    X : dask array of shape (n_samples, n_features)
        Inputs.
    y : dask array
        Targets as the network reads them, with ``X``'s row chunks.
    sample_weight : dask array of shape (n_samples,) or None, default=None
        A weight per row, with ``X``'s row chunks.
    max_iter : int, default=200
        Iterations at most.
    max_fun : int, default=15000
        Objective evaluations at most.
    l2 : float, default=0.0
        The penalty ``0.5 * l2 * sum(W**2)`` divided by the rows (or the
        weights' sum).
    tol : float, default=1e-4
        Stop when the projected gradient falls below it.
    loss_scale : float, default=1.0
        The mean loss is divided by it (scikit-learn's squared error is
        averaged over the outputs).
    callback : callable or None, default=None
        scipy's ``callback(intermediate_result)`` after each iteration.

    Returns
    -------
    scipy.optimize.OptimizeResult
        scipy's result.
    """
    try:
        from scipy.optimize import minimize
    except ImportError:
        raise ImportError('lbfgs needs scipy: pip install scipy') from None
    fit_id = uuid.uuid4().hex
    parts = [X.to_delayed().ravel().tolist(), y.to_delayed().ravel().tolist()]
    if sample_weight is not None:
        parts.append(sample_weight.to_delayed().ravel().tolist())
    blocks = client.compute(list(zip(*parts)))
    sizes = [int(c) for c in X.chunks[0]]
    layout = net.layout
    weights = np.zeros(net.theta.size, bool)
    for l in range(len(layout.sizes) - 1):
        o = int(layout.poff[l])
        weights[o:o + int(layout.sizes[l] * layout.sizes[l + 1])] = True
    # The network (its structure) goes with each task, not scattered, so a
    # task rerun on another worker after a fault has all it needs.

    def objective(theta):
        futures = [client.submit(_chunk_loss_grad, fit_id, i, net, block, theta, loss_scale,
                                 pure=False, retries=RETRIES)
                   for i, block in enumerate(blocks)]
        results = client.gather(futures)
        for i, res in enumerate(results):
            if isinstance(res, BadChunk):
                first_row = sum(sizes[:i])
                raise ValueError(f"chunk {i} (rows {first_row}-{first_row + sizes[i] - 1})"
                                 f": {res.error}")
        n = sum(res[2] for res in results)
        if not n > 0:
            raise ValueError("sample_weight sums to zero: nothing to fit")
        loss, grad = 0.0, np.zeros(theta.size, np.float64)
        for res in results:
            loss += (res[2] / n) * res[0]
            grad += (res[2] / n) * res[1]
        W = theta[weights]
        grad[weights] += (l2 / n) * W
        return loss + 0.5 * l2 * float(W @ W) / n, grad

    try:
        with net.engine.exclusive():
            result = minimize(objective, net.theta.astype(np.float64), method="L-BFGS-B",
                              jac=True, callback=callback,
                              options={"maxiter": max_iter, "maxfun": max_fun, "gtol": tol})
    finally:
        client.cancel(blocks)
        client.run(_forget, fit_id)
    net.theta[...] = result.x
    return result


def _fit_lbfgs(client, net, X, y, max_iter, l2, tol, val, verbose):
    """``fit(optimizer="lbfgs")``: :func:`lbfgs` with a history."""
    history = training.new_history(val is not None)
    losses = history["loss"]

    def record(intermediate_result):
        losses.append(float(intermediate_result.fun))
        if verbose:
            print(f"iteration {len(losses):4d}  loss {losses[-1]:.6f}", flush=True)

    result = lbfgs(client, net, X, y, max_iter=max_iter, l2=l2, tol=tol, callback=record)
    if not np.isfinite(net.theta).all():
        raise training.TrainingDivergedError(
            "lbfgs reached non-finite parameters: scale the inputs or raise l2")
    history["n_iter"] = int(result.nit)
    history["converged"] = result.status == 0
    history["message"] = (result.message.decode("latin1") if isinstance(result.message, bytes)
                          else str(result.message))
    if val is not None:
        r = net._evaluate(*val)
        history["val_loss"].append(r["loss"])
        history["val_accuracy"].append(r.get("accuracy", float("nan")))
    net.history = history
    return history


# ------------------------------------------------------------ public API
def fit(net: Any, X: Any, y: Any, *, client: Any = None, epochs: int = 1,
        sync_every: int | None = None, batch_size: int = 100, lr: float = 0.1,
        optimizer: str = "sgd", momentum: float = 0.0, nesterov: bool = False,
        beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, l2: float = 0.0,
        lr_schedule: Any = None, shuffle: bool = True, validation_data: tuple | None = None,
        early_stopping: bool = False, patience: int = 10, min_delta: float = 0.0,
        callbacks: Sequence[Callable] = (), verbose: bool = False, weight_decay: float = 0.01,
        dropout: float | Sequence[float] | None = None, clip_norm: float | None = None,
        tol: float = 1e-4) -> dict:
    """Train ``net`` on dask arrays by synchronous averaging over their chunks.

    See the module docstring. ``optimizer="lbfgs"`` runs exact full-batch
    L-BFGS-B over the chunks instead (needs scipy), minimising the mean
    loss plus ``0.5 * l2 * sum(W**2) / rows`` (the estimators'
    ``solver="lbfgs"`` with ``alpha=l2``) for at most ``epochs``
    iterations; the stochastic options do not apply to it.

    Parameters
    ----------
    net : fastnn.Network
        The network, trained in place.
    X : dask array or array-like of shape (n_samples, n_features)
        Inputs; NumPy inputs are split into one chunk per worker.
    y : dask array or array-like
        Targets, as ``Network.fit`` takes them; re-chunked to ``X``'s rows.
    client : distributed.Client or None, default=None
        The cluster (default: the current client, else a new local cluster
        closed afterwards).
    epochs : int, default=1
        Passes over the data (lbfgs: iterations at most).
    sync_every : int or None, default=None
        Steps between averagings (None: 1, every step, which is
        ``Network.fit``'s SGD; more trade accuracy for fewer rounds).
    batch_size : int, default=100
        The whole batch, as in ``Network.fit``: each chunk trains its share.
    lr : float, default=0.1
        Learning rate.
    optimizer : {"sgd", "adam", "adamw", "rmsprop", "adagrad", "lbfgs"}, default="sgd"
        As ``Network.fit``'s, or exact full-batch ``"lbfgs"``.
    momentum : float, default=0.0
        SGD's momentum.
    nesterov : bool, default=False
        Nesterov's momentum.
    beta1 : float, default=0.9
        Adam's first-moment decay.
    beta2 : float, default=0.999
        Adam's second-moment decay.
    eps : float, default=1e-8
        The optimizers' stability term.
    l2 : float, default=0.0
        L2 penalty, as ``Network.fit``'s (lbfgs: as above).
    lr_schedule : str, callable or None, default=None
        A schedule of :mod:`fastnn.schedules`.
    shuffle : bool, default=True
        Shuffle each chunk's rows every epoch.
    validation_data : tuple (x_val, y_val) or None, default=None
        Evaluated on the client with the averaged model after each epoch.
    early_stopping : bool, default=False
        As ``Network.fit``'s (needs ``validation_data``).
    patience : int, default=10
        As ``Network.fit``'s.
    min_delta : float, default=0.0
        As ``Network.fit``'s.
    callbacks : sequence of callable, default=()
        ``f(net, history)`` after each epoch; True stops.
    verbose : bool, default=False
        Print a line per epoch (lbfgs: per iteration).
    weight_decay : float, default=0.01
        AdamW's decoupled weight decay.
    dropout : float, list of float or None, default=None
        As ``Network.fit``'s.
    clip_norm : float or None, default=None
        As ``Network.fit``'s, per chunk step.
    tol : float, default=1e-4
        lbfgs: stop when the projected gradient falls below it.

    Returns
    -------
    dict
        The history (also ``net.history``), as ``Network.fit``'s; lbfgs:
        the loss per iteration, ``n_iter``, ``converged`` and scipy's
        ``message``.
    """
    if optimizer == "lbfgs":
        return _lbfgs_entry(net, X, y, client, epochs, l2, tol, validation_data, verbose,
                            sync_every=sync_every, dropout=dropout, clip_norm=clip_norm,
                            early_stopping=early_stopping, lr_schedule=lr_schedule,
                            callbacks=callbacks)
    opt = training.optimizer(optimizer, lr, momentum, nesterov, beta1, beta2, eps, l2,
                             weight_decay=weight_decay, clip_norm=clip_norm,
                             **net._dropout_settings(dropout))
    epochs, policy, callbacks = net._fit_settings(
        epochs, opt, lr_schedule, (early_stopping, patience, min_delta), callbacks)
    batch_size = validation.check_int("batch_size", batch_size, 1)
    shuffle = validation.check_bool("shuffle", shuffle)
    sync_every = 1 if sync_every is None else validation.check_int("sync_every", sync_every, 1)
    if early_stopping and validation_data is None:
        raise ValueError("early_stopping needs validation_data")
    with _session(net, X, y, client, validation_data) as (client, X, y, val):
        with net.engine.exclusive():
            X, y, shares = _balanced(X, y, batch_size)
            trainer = _DaskTrainer(client, net, X, y, shares, shuffle, sync_every)
            state = training.state_for(net.engine, opt, net.theta, keep=False)
            net.history = hist = training.new_history(val is not None)
            classify = net.output not in validation.REGRESSION_OUTPUTS

            def validate():
                r = net._evaluate(*val)
                return {"val_loss": r["loss"], "val_accuracy": r.get("accuracy", float("nan"))}

            training.run_epochs(trainer, opt, state, policy, epochs, training.Watch(
                hist, validate if val is not None else None, callbacks=callbacks, owner=net,
                report=epoch_printer(classify) if verbose else None,
                classify=classify))
            net.engine.shuffle_state[...] = trainer.streams[0]
            best = policy.finish(net.theta)
            if best is not None:
                hist["best_epoch"] = best
            client.cancel(trainer.blocks)
            client.run(_forget, trainer.fit_id)
        return hist


def _lbfgs_entry(net, X, y, client, epochs, l2, tol, validation_data, verbose, **unused):
    for name, value in unused.items():
        if value is not None and value is not False and not (
                isinstance(value, (list, tuple)) and not value):
            raise ValueError(f'{name} does not apply to optimizer="lbfgs" (a full-batch '
                             f"solver): leave it unset or use a stochastic optimizer")
    epochs = validation.check_int("epochs", epochs, 1)
    l2 = validation.check_float("l2", l2, 0)
    tol = validation.check_float("tol", tol, 0)
    verbose = validation.check_bool("verbose", verbose)
    with _session(net, X, y, client, validation_data) as (client, X, y, val):
        return _fit_lbfgs(client, net, X, y, epochs, l2, tol, val, verbose)


@contextlib.contextmanager
def _session(net, X, y, client, validation_data):
    """(client, X, y, val) for a fit: the validation data checked, then (only
    if x has rows) the given client, the current one or a new local cluster
    (closed on leaving), and X, y chunked for it."""
    import dask.array as da

    val = None
    if validation_data is not None:
        xv, yv = (v.compute() if isinstance(v, da.Array) else v for v in validation_data)
        Xv = net._check_x(xv, "validation_data x")
        val = (Xv,) + tuple(net._check_y(yv, Xv.shape[0], "validation_data y"))
    if (X.shape[0] if hasattr(X, "shape") else len(X)) == 0:  # before starting a cluster
        raise ValueError("x is empty (0 samples)")
    client, cluster = _get_client(client)
    try:
        yield (client,) + _chunked(client, X, y) + (val,)
    finally:
        if cluster is not None:
            client.close()
            cluster.close()


def _chunked(client, X, y):
    """X and y as dask arrays with aligned row chunks (NumPy inputs: one
    chunk per worker)."""
    import dask.array as da

    workers = max(1, len(client.scheduler_info().get("workers", {})))
    if not isinstance(X, da.Array):
        n = len(X)
        rows = -(-n // workers) if n else 1
        X = _as_dask("x", X, rows)
        y = _as_dask("y", y, rows)
    else:
        y = _as_dask("y", y)
    return _check_rows(X, y)


def _proba_block(x, net):
    return net.predict_proba(x)


def _label_block(x, net):
    return net.predict(x)


def _prepare_inference(net, X):
    import dask
    import dask.array as da

    X = _as_dask("x", X)
    if X.ndim != 2:
        raise ValueError(f"x must be 2-D (samples, features), got shape {X.shape}")
    if X.shape[1] != net.n_inputs:
        raise ValueError(f"x has {X.shape[1]} features but the network expects {net.n_inputs}")
    X = X.rechunk({1: -1})
    # One key for the network: each worker receives it once, whatever the
    # number of blocks.
    return X, dask.delayed(net, pure=True), da


def predict_proba(net: Any, X: Any) -> Any:
    """``net.predict_proba`` of a dask array's rows, lazily.

    Parameters
    ----------
    net : fastnn.Network
        The network, sent once per worker.
    X : dask array or array-like of shape (n_samples, n_features)
        Inputs.

    Returns
    -------
    dask array of shape (n_samples, n_outputs)
        Probabilities or regression values, with ``X``'s row chunks.
    """
    X, netd, da = _prepare_inference(net, X)
    return da.map_blocks(_proba_block, X, netd, dtype=net.dtype, meta=np.empty((0, 0), net.dtype),
                         chunks=(X.chunks[0], (net.n_outputs,)))


def predict(net: Any, X: Any) -> Any:
    """``net.predict`` of a dask array's rows, lazily.

    Parameters
    ----------
    net : fastnn.Network
        The network, sent once per worker.
    X : dask array or array-like of shape (n_samples, n_features)
        Inputs.

    Returns
    -------
    dask array
        Labels or regression values, with ``X``'s row chunks.
    """
    X, netd, da = _prepare_inference(net, X)
    if net.output in validation.REGRESSION_OUTPUTS:
        return da.map_blocks(_label_block, X, netd, dtype=net.dtype,
                             meta=np.empty((0, 0), net.dtype), chunks=(X.chunks[0], (net.n_outputs,)))
    if net.output == "softmax" or net.n_outputs == 1:
        return da.map_blocks(_label_block, X, netd, dtype=np.int64, drop_axis=1,
                             meta=np.empty(0, np.int64), chunks=(X.chunks[0],))
    return da.map_blocks(_label_block, X, netd, dtype=np.int64,
                         meta=np.empty((0, 0), np.int64), chunks=(X.chunks[0], (net.n_outputs,)))
