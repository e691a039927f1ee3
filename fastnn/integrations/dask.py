"""Training, prediction and search beyond one process, on Dask.

Needs ``dask[distributed]`` (``pip install "fastnn[dask]"``); imported only
when used.

* :func:`fit`: data-parallel training by synchronous model averaging
  ("local SGD"). The rows of ``X`` are cut into the dask array's row
  chunks; each chunk is persisted once on a worker, and every round each
  chunk's task, run where the chunk is, trains a copy of the network on
  ``sync_every`` of its mini-batches (default: its whole pass). The driver
  then averages the parameters and the optimizer state (momentum velocity,
  Adam moments) weighted by the rows each chunk trained in the round, and
  the next round starts from the average. An epoch is one pass over every
  chunk; the epoch loop itself is fastnn's own (:func:`fastnn.engine.training.
  run_epochs`): learning-rate schedules, validation, early stopping (on the
  averaged model), callbacks and the history behave as in ``Network.fit``.
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

Why model averaging rather than a gradient all-reduce per batch: a
classic-MNIST batch takes ~0.15 ms of compute, while a Dask round trip is
milliseconds; averaging once per local pass sends the parameters (~356 KB
for 784-100-50-10 float32) twice per worker per round instead.
"""
import contextlib
import copy
import math
import os
import threading
import uuid
from typing import Any, NamedTuple

import numpy as np

from ..engine import training, validation
from ..kernels.bundles import OptimizerState

RETRIES = 3  # reruns of a round whose worker died


# ---------------------------------------------------------------- clients
def local_cluster(n_workers=None, **kwargs):
    """A ``distributed.LocalCluster`` suited to fastnn: one single-threaded
    worker process per core, each with one Numba thread (no
    oversubscription: the workers already use every core)."""
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


def from_npy(path, rows_per_chunk):
    """A dask array over a ``.npy`` file whose chunks are read by the
    workers themselves (memory-mapped, ``rows_per_chunk`` rows each): the
    data never passes through the client or one machine's memory as a
    whole. Every worker needs the file at ``path`` (a shared file system)."""
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
    def build():
        # Its own copy: chunks on one worker share the network object they receive.
        own = copy.deepcopy(net)
        X = own.check_x(x, check_finite=False)
        labels, T = own.check_y(y, X.shape[0])
        return own, own.trainer(X, labels, T, batch_size, shuffle)
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
        net, trainer = _chunk_trainer(task.fit_id, task.index, net, x, y, task.batch_size,
                                      task.shuffle)
    except (ValueError, TypeError) as e:
        return BadChunk(str(e))
    net.theta[...] = start.theta
    net.engine.shuffle_state[...] = start.shuffle_state
    state = OptimizerState(start.vel.copy(), start.sq.copy(), start.step.copy())
    sums = trainer.pass_slice(task.opt, state, task.first, task.last, _worker_threads())
    rows = min(trainer.n, task.last * task.batch_size) - task.first * task.batch_size
    return RoundResult(RoundState(net.theta.copy(), state.vel, state.sq, state.step,
                                  net.engine.shuffle_state.copy()), sums, rows)


class _DaskTrainer:
    """What :func:`fastnn.engine.training.run_epochs` needs of a trainer, with an
    epoch run as rounds of model averaging over the chunks."""

    def __init__(self, client, net, X, y, batch_size, shuffle, sync_every):
        self.client, self.net, self.X = client, net, X
        self.model = net.model()
        self.n = int(X.shape[0])
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.sizes = sizes = [int(c) for c in X.chunks[0]]
        self.batches = [-(-s // batch_size) for s in sizes]
        self.sync_every = sync_every or max(self.batches)
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

    def guarded_epoch(self, opt, state, progress):
        theta = self.net.theta
        self._state = state
        self._snapshot = (theta.copy(), [a.copy() for a in state],
                          [s.copy() for s in self.streams])
        return training.guarded(lambda: self._epoch(opt, state, progress), self.rollback, theta)

    def _epoch(self, opt, state, progress):
        from distributed import wait

        totals = [0.0, 0.0, 0]
        after = list(self.streams)
        rounds = -(-max(self.batches) // self.sync_every)
        for r in range(rounds):
            first = r * self.sync_every
            futures, ran = [], []
            for i, block in enumerate(self.blocks):
                last = min(self.batches[i], first + self.sync_every)
                if first >= last:
                    continue  # a shorter chunk: its pass is over
                ran.append(i)
                task = RoundTask(self.fit_id, i, opt, self.batch_size, self.shuffle, first, last)
                start = RoundState(self.net.theta, state.vel, state.sq, state.step,
                                   self.streams[i])
                futures.append(self.client.submit(
                    _chunk_round, task, self.net, block, start, pure=False, retries=RETRIES,
                    key=f"fastnn-round-{self.fit_id}-{r}-{i}-{uuid.uuid4().hex[:8]}"))
            wait(futures)
            results = self.client.gather(futures)
            for i, res in zip(ran, results):
                if isinstance(res, BadChunk):
                    first_row = sum(self.sizes[:i])
                    raise ValueError(f"chunk {i} (rows {first_row}-{first_row + self.sizes[i] - 1})"
                                     f": {res.error}")
            weights = np.array([res.rows for res in results], np.float64)
            share = weights / weights.sum()
            self.net.theta[...] = _weighted(share, [res.state.theta for res in results])
            state.vel[...] = _weighted(share, [res.state.vel for res in results])
            if state.sq.size:
                state.sq[...] = _weighted(share, [res.state.sq for res in results])
            state.step[...] = max(int(res.state.step[0]) for res in results)
            for i, res in zip(ran, results):
                after[i] = res.state.shuffle_state
                for k in range(3):
                    totals[k] += res.sums[k]
            if progress is not None and callable(progress):
                progress(r + 1, rounds)
        self.streams = after
        return tuple(totals)

    def rollback(self):
        theta, state_arrays, streams = self._snapshot
        self.net.theta[...] = theta
        for dst, src in zip(self._state, state_arrays):
            dst[...] = src
        self.streams = streams

    def input_scale(self):
        import dask.array as da

        return float(da.fabs(self.X).max().compute())


def _weighted(share, arrays):
    out = np.zeros_like(arrays[0])
    for w, a in zip(share, arrays):
        out += a.dtype.type(w) * a
    return out


# ------------------------------------------------------ exact full batch
def _chunk_objective(fit_id, index, net, block):
    def build():
        own = copy.deepcopy(net)
        x, y = block
        X = own.check_x(x)
        if not isinstance(X, np.ndarray):
            X = np.ascontiguousarray(X.toarray())  # the full-batch objective is dense
        labels, T = own.check_y(y, X.shape[0])
        return training.full_batch_objective(own, X, labels, T), X.shape[0]
    return _cached(_OBJECTIVES, (fit_id, index), build)


def _chunk_loss_grad(fit_id, index, net, block, theta):
    """A chunk's mean loss and its gradient (float64) at ``theta``, and its
    row count, computed where the chunk is."""
    try:
        objective, rows = _chunk_objective(fit_id, index, net, block)
    except (ValueError, TypeError) as e:
        return BadChunk(str(e))
    loss, grad = objective(theta)
    return loss, grad, rows


def _fit_lbfgs(client, net, X, y, max_iter, l2, tol, val, verbose):
    """Full-batch L-BFGS-B over the chunks (see the module docstring)."""
    try:
        from scipy.optimize import minimize
    except ImportError:
        raise ImportError('optimizer="lbfgs" needs scipy: pip install scipy') from None
    fit_id = uuid.uuid4().hex
    xs, ys = X.to_delayed().ravel().tolist(), y.to_delayed().ravel().tolist()
    blocks = client.compute(list(zip(xs, ys)))
    sizes = [int(c) for c in X.chunks[0]]
    n = float(sum(sizes))
    layout = net.layout
    weights = np.zeros(net.theta.size, bool)
    for l in range(len(layout.sizes) - 1):
        o = int(layout.poff[l])
        weights[o:o + int(layout.sizes[l] * layout.sizes[l + 1])] = True
    # The network (its structure) goes with each task, not scattered, so a
    # task rerun on another worker after a fault has all it needs.

    def objective(theta):
        futures = [client.submit(_chunk_loss_grad, fit_id, i, net, block, theta,
                                 pure=False, retries=RETRIES)
                   for i, block in enumerate(blocks)]
        results = client.gather(futures)
        loss, grad = 0.0, np.zeros(theta.size, np.float64)
        for i, res in enumerate(results):
            if isinstance(res, BadChunk):
                first_row = sum(sizes[:i])
                raise ValueError(f"chunk {i} (rows {first_row}-{first_row + sizes[i] - 1})"
                                 f": {res.error}")
            share = res[2] / n
            loss += share * res[0]
            grad += share * res[1]
        W = theta[weights]
        grad[weights] += (l2 / n) * W
        return loss + 0.5 * l2 * float(W @ W) / n, grad

    history = training.new_history(val is not None)
    losses = history["loss"]

    def record(intermediate_result):
        losses.append(float(intermediate_result.fun))
        if verbose:
            print(f"iteration {len(losses):4d}  loss {losses[-1]:.6f}", flush=True)

    try:
        with net.engine.exclusive():
            result = minimize(objective, net.theta.astype(np.float64), method="L-BFGS-B",
                              jac=True, callback=record,
                              options={"maxiter": max_iter, "maxfun": 15000, "gtol": tol})
    finally:
        client.cancel(blocks)
        client.run(_forget, fit_id)
    net.theta[...] = result.x
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
def fit(net, X, y, *, client=None, epochs=1, sync_every=None, batch_size=100, lr=0.1,
        optimizer="sgd", momentum=0.0, nesterov=False, beta1=0.9, beta2=0.999, eps=1e-8,
        l2=0.0, lr_schedule=None, shuffle=True, validation_data=None, early_stopping=False,
        patience=10, min_delta=0.0, callbacks=(), verbose=False, weight_decay=0.01,
        dropout=None, clip_norm=None, tol=1e-4):
    """Train ``net`` (a :class:`fastnn.Network`) on dask arrays ``X``, ``y``
    by synchronous model averaging (see the module docstring); returns the
    history (also ``net.history``). NumPy inputs are split into one chunk
    per worker. ``sync_every``: batches each chunk trains between
    averagings (default: its whole pass, once per epoch). The other options
    are ``Network.fit``'s (``validation_data`` is evaluated on the driver
    with the averaged model).

    ``optimizer="lbfgs"``: exact full-batch L-BFGS-B over the chunks (needs
    scipy), minimising the mean loss plus ``0.5 * l2 * sum(W**2) / rows``
    (the estimators' ``solver="lbfgs"`` with ``alpha=l2``) for at most
    ``epochs`` iterations, stopping when the projected gradient falls below
    ``tol``. The history holds the loss per iteration, ``n_iter``,
    ``converged`` and scipy's ``message``; the options of the stochastic
    solvers do not apply."""
    if optimizer == "lbfgs":
        return _lbfgs_entry(net, X, y, client, epochs, l2, tol, validation_data, verbose,
                            sync_every=sync_every, dropout=dropout, clip_norm=clip_norm,
                            early_stopping=early_stopping, lr_schedule=lr_schedule,
                            callbacks=callbacks)
    opt = training.optimizer(optimizer, lr, momentum, nesterov, beta1, beta2, eps, l2,
                             weight_decay=weight_decay, clip_norm=clip_norm,
                             **net.dropout_settings(dropout))
    epochs, policy, callbacks = net.fit_settings(
        epochs, opt, lr_schedule, (early_stopping, patience, min_delta), callbacks)
    batch_size = validation.check_int("batch_size", batch_size, 1)
    shuffle = validation.check_bool("shuffle", shuffle)
    if sync_every is not None:
        sync_every = validation.check_int("sync_every", sync_every, 1)
    if early_stopping and validation_data is None:
        raise ValueError("early_stopping needs validation_data")
    with _session(net, X, y, client, validation_data) as (client, X, y, val):
        with net.engine.exclusive():
            trainer = _DaskTrainer(client, net, X, y, batch_size, shuffle, sync_every)
            state = training.state_for(net.engine, opt, net.theta, keep=False)
            net.history = hist = training.new_history(val is not None)
            classify = net.output not in validation.REGRESSION_OUTPUTS

            def validate():
                r = net._evaluate(*val)
                return {"val_loss": r["loss"], "val_accuracy": r.get("accuracy", float("nan"))}

            training.run_epochs(trainer, opt, state, policy, epochs, training.Watch(
                hist, validate if val is not None else None, callbacks=callbacks, owner=net,
                report=training.epoch_printer(classify) if verbose else None,
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
        Xv = net.check_x(xv, "validation_data x")
        val = (Xv,) + tuple(net.check_y(yv, Xv.shape[0], "validation_data y"))
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


def predict_proba(net, X):
    """The output head's values (probabilities, or regression values) of a
    dask array's rows, as a lazy dask array with ``X``'s row chunks."""
    X, netd, da = _prepare_inference(net, X)
    return da.map_blocks(_proba_block, X, netd, dtype=net.dtype, meta=np.empty((0, 0), net.dtype),
                         chunks=(X.chunks[0], (net.n_outputs,)))


def predict(net, X):
    """``net.predict`` of a dask array's rows (labels, or regression
    values), as a lazy dask array with ``X``'s row chunks."""
    X, netd, da = _prepare_inference(net, X)
    if net.output in validation.REGRESSION_OUTPUTS:
        return da.map_blocks(_label_block, X, netd, dtype=net.dtype,
                             meta=np.empty((0, 0), net.dtype), chunks=(X.chunks[0], (net.n_outputs,)))
    if net.output == "softmax" or net.n_outputs == 1:
        return da.map_blocks(_label_block, X, netd, dtype=np.int64, drop_axis=1,
                             meta=np.empty(0, np.int64), chunks=(X.chunks[0],))
    return da.map_blocks(_label_block, X, netd, dtype=np.int64,
                         meta=np.empty((0, 0), np.int64), chunks=(X.chunks[0], (net.n_outputs,)))
