"""The training drivers of :mod:`fastnn.kernels.train` in plain NumPy: the
first run trains on them while the kernels compile in the background.

On an empty kernel cache the compiled drivers take ~30-40 s to compile on
a 2-core machine (``python bench/compile_profile.py``); the same math in
NumPy trains the classic 784-100-50-10 network at a third of the kernels'
speed (0.34 vs 0.105 s per MNIST epoch, ``bench/compare.py``) and needs no
compiling. So a cold fit starts at once here while a helper process
compiles the kernels into the cache (:mod:`fastnn.runtime.cold_start`), and
switches to them at the first epoch that starts after they are ready.

Each function takes the same argument bundles as its compiled namesake and
changes the same arrays in place (parameters, gradient buffer, optimizer
state, visiting order, shuffle stream), so the two can take turns within a
fit: the shuffle is the same SplitMix64 stream, the loss heads and updates
the same formulas (:mod:`.kernels.losses`, :mod:`.kernels.optim`). The
results agree to rounding, not bit for bit (other summation orders); the
parity tests hold each function to its compiled namesake.

What this does not do: build the sparse first layer's per-batch CSC blocks
(a sparse batch is densified here; :func:`epoch_begin` leaves the blocks
stale and the caller marks them so).
"""
import contextlib
import functools

import numpy as np

from ..kernels.bundles import is_sparse
from .memory import EVAL_ROWS
from .registry import ACTIVATION_BY_CODE, HEAD_BY_CODE, OPTIMIZER_BY_KIND, step_size

_GAMMA = np.uint64(0x9E3779B97F4A7C15)


# --- BLAS threads ---------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _openblas():
    """(set, get) of the number of threads of the OpenBLAS NumPy loaded (Linux:
    found in /proc/self/maps; NumPy's wheels bundle scipy-openblas), or None."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""),
                               ("openblas_", "64_"), ("openblas_", "")):
            try:
                set_n = getattr(lib, f"{prefix}set_num_threads{suffix}")
                get_n = getattr(lib, f"{prefix}get_num_threads{suffix}")
            except AttributeError:
                continue
            set_n.argtypes, get_n.restype = [ctypes.c_int], ctypes.c_int
            return set_n, get_n
    return None


@contextlib.contextmanager
def one_blas_thread():
    """NumPy's BLAS on one thread while a helper compiles on the other core:
    OpenBLAS's threads spin-wait for the core the compiler holds. Measured
    (2-core Xeon, cold cache): L-BFGS on digits 5.8 s with two BLAS threads,
    1.3 s with one; the README's main job, 2 MNIST epochs, 4.8 + 12.4 s with
    two, ~1.5 + 0.7 s with one."""
    blas = _openblas()
    if blas is None:
        yield
        return
    set_n, get_n = blas
    before = get_n()
    set_n(1)
    try:
        yield
    finally:
        set_n(before)


# --- shuffling: kernels.train.shuffle_inplace, vectorised -------------------
def _splitmix64_stream(state, count):
    """The next ``count`` outputs of :func:`.kernels.rng.splitmix64` (the
    state advances by a constant per draw, so the draws are independent
    of each other), advancing ``state`` as that many calls would."""
    with np.errstate(over="ignore"):
        z = state[0] + _GAMMA * np.arange(1, count + 1, dtype=np.uint64)
        state[0] = state[0] + _GAMMA * np.uint64(count)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def epoch_begin(order, rng_state, shuffle, sp, csc_ready, batch_size):
    """The epoch's visiting order, as the compiled ``epoch_begin`` chooses
    it (Fisher-Yates driven by the same stream). The sparse per-batch CSC
    blocks are NOT built: the caller must treat them as stale."""
    if not shuffle:
        return
    n = order.shape[0]
    order[:] = np.arange(n)
    if n < 2:
        return
    i = np.arange(n - 1, 0, -1, dtype=np.uint64)
    js = (_splitmix64_stream(rng_state, n - 1) % (i + np.uint64(1))).astype(np.int64).tolist()
    o = order.tolist()
    for i, j in zip(range(n - 1, 0, -1), js):
        o[i], o[j] = o[j], o[i]
    order[:] = o


# --- one batch --------------------------------------------------------------
def _dense_rows(sp, idx, d, dtype):
    """Rows ``idx`` of the CSR matrix in ``sp`` as a dense (len(idx), d) array."""
    start, end = sp.indptr[idx], sp.indptr[idx + 1]
    counts = end - start
    out = np.zeros((idx.shape[0], d), dtype)
    total = int(counts.sum())
    if total:
        row = np.repeat(np.arange(idx.shape[0]), counts)
        pos = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts) \
            + np.repeat(start, counts)
        out[row, sp.indices[pos]] = sp.values[pos]
    return out


def _layers(model):
    sizes, poff, theta = model.sizes, model.poff, model.theta
    for l in range(sizes.shape[0] - 1):
        K, N, o = int(sizes[l]), int(sizes[l + 1]), int(poff[l])
        yield l, slice(o, o + K * N), (K, N), slice(o + K * N, o + K * N + N)


def forward(model, x, drop=None, key=0, pre=None):
    """The outputs of every layer (the last: the logits); with ``drop``
    (each layer's dropout rate) and the batch's mask ``key``, the hidden
    outputs after inverted dropout (``kernels.dropout``). ``pre``: a list
    that gets each layer's pre-activation (what the backward of an
    activation ``from_input`` reads)."""
    H, outs = x, []
    for l, w, shape, b in _layers(model):
        U = H @ model.theta[w].reshape(shape) + model.theta[b]
        if pre is not None:
            pre.append(U)
        H = ACTIVATION_BY_CODE[int(model.acts[l])].forward(U)
        if drop is not None and drop.shape[0] and drop[l] > 0:
            keep = _kept(H.shape, drop[l], _layer_key(key, l))
            H = np.where(keep, H * H.dtype.type(1.0 / (1.0 - drop[l])), H.dtype.type(0))
        outs.append(H)
    return outs


# kernels.dropout's mask hash, on arrays (uint64 arithmetic wraps alike).
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(z):
    z = np.uint64(z)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def batch_key(seed, step):
    with np.errstate(over="ignore"):
        return _mix(np.uint64(seed) + np.uint64(step) * np.uint64(0x9E3779B97F4A7C15))


def _layer_key(key, l):
    with np.errstate(over="ignore"):
        return _mix(np.uint64(key) + np.uint64(l + 1) * np.uint64(0xD1B54A32D192ED03))


def _kept(shape, rate, key):
    cell = np.arange(shape[0] * shape[1], dtype=np.uint64).reshape(shape)
    with np.errstate(over="ignore"):
        x = (np.uint64(key) ^ cell) * _M1
        x = (x ^ (x >> np.uint64(29))) * _M2
    return (x >> np.uint64(32)) >= np.uint64(rate * 4294967296.0)


def head_loss(head, Z, labels, T, w):
    """(mean loss, n_correct, dE/dZ) of a head, as ``loss_forward_backward``:
    the loss a (weighted) mean over rows in float64."""
    spec = HEAD_BY_CODE[int(head.code)]
    weighted = w.shape[0] > 0
    if weighted:
        s = float(w.sum())
        inv_b = 1.0 / s if s > 0 else 0.0
        wi = w.astype(np.float64)
    else:
        inv_b = 1.0 / Z.shape[0]
        wi = np.ones(Z.shape[0])
    Z64 = Z.astype(np.float64)
    per_row, dZ = spec.rows(Z64, labels, T, head)
    correct = spec.correct(Z64, labels, T) if spec.correct is not None else 0
    loss = float((per_row * wi).sum()) * inv_b
    return loss, correct, (dZ * (wi[:, None] * inv_b)).astype(Z.dtype)


def backward(model, x, outs, dZ, grad, drop=None, key=0, pre=None):
    """Every layer's gradient into ``grad`` (the parameters' layout);
    ``drop``, ``key``, ``pre`` as given to :func:`forward`."""
    dU = dZ
    layers = list(_layers(model))
    for l, w, shape, b in reversed(layers):
        Hin = outs[l - 1] if l > 0 else x
        grad[w] = (Hin.T @ dU).ravel()
        grad[b] = dU.sum(axis=0)
        if l > 0:
            dX = dU @ model.theta[w].reshape(shape).T
            spec = ACTIVATION_BY_CODE[int(model.acts[l - 1])]
            rate = drop[l - 1] if drop is not None and drop.shape[0] else 0.0
            dt = Hin.dtype.type
            if spec.from_input:
                slope = spec.derivative(pre[l - 1])
            else:  # the output before dropout: Hin * (1 - rate) where kept
                slope = spec.derivative(Hin * dt(1.0 - rate) if rate > 0 else Hin)
            if rate > 0:
                keep = _kept(Hin.shape, rate, _layer_key(key, l - 1))
                dU = np.where(keep, dX * (dt(1.0 / (1.0 - rate)) * slope), dt(0))
            else:
                dU = dX * slope


def apply_update(model, grad, state, opt, rows):
    """``kernels.train.apply_update``: clipping, the L2 term, then the
    optimizer step, in place; returns the batch's penalty."""
    theta = model.theta
    dt = theta.dtype.type
    if opt.clip > 0:  # clip_grad_norm_: the loss gradient, before the L2 term
        norm = float(np.sqrt(np.dot(grad.astype(np.float64), grad.astype(np.float64))))
        factor = min(1.0, opt.clip / (norm + 1e-6))
        if factor < 1.0:
            grad *= dt(factor)
    penalty = 0.0
    if opt.l2 > 0:
        coef = (opt.l2 / rows if rows > 0 else 0.0) if opt.l2_per_row else opt.l2
        sq = 0.0
        for _, w, _, _ in _layers(model):
            W = theta[w]
            grad[w] += dt(coef) * W
            sq += float(np.dot(W.astype(np.float64), W.astype(np.float64)))
        penalty = 0.5 * coef * sq
    state.step[0] += 1
    rule = OPTIMIZER_BY_KIND[opt.kind]
    rule.step(theta, grad, state, opt, step_size(opt, int(state.step[0])))
    return penalty


def _batch(X, sp, idx, s, e, gather):
    if is_sparse(sp):
        return _dense_rows(sp, idx, X.shape[1], X.dtype)
    return X[idx] if gather else X[s:e]


# --- the drivers --------------------------------------------------------------
def train_batches(data, model, head, grad, state, opt, sp, work, bufs, first, last, plan):
    """``kernels.train.train_batches``: batches ``first..last-1`` of the
    epoch; returns (sum of per-row losses, of per-row penalties, n_correct).
    Or the whole epochs of ``plan`` (:class:`.kernels.bundles.EpochPlan`)."""
    k = plan.rates.shape[0]
    if k == 0:
        start = tuple(plan.sums[0]) if plan.sums.shape[0] else (0.0, 0.0, 0)
        sums = _run_batches(data, (model, head, grad, state, opt), sp, range(first, last), start)
        if plan.sums.shape[0]:
            plan.sums[0] = sums
        return sums
    nb = -(-data.order.shape[0] // data.batch_size)
    plan.status[:] = (k, 0)
    for e in range(k):
        epoch_begin(data.order, plan.rng_state, data.shuffle, sp, False, data.batch_size)
        sums = _run_batches(data, (model, head, grad, state, opt._replace(lr=plan.rates[e])),
                            sp, range(nb))
        plan.sums[e] = sums
        if not (np.isfinite(sums[0]) and np.isfinite(sums[1]) and np.isfinite(model.theta).all()):
            plan.status[:] = (e + 1, 1)
            break
    return 0.0, 0.0, 0


def _run_batches(data, step, sp, batches, start=(0.0, 0.0, 0)):
    """Train on ``batches`` (indices into the epoch) with ``step`` = (model,
    head, grad, optimizer state, Optimizer); returns the running sums
    continued from ``start``."""
    model, head, grad, state, opt = step
    X, labels, T, order, w = data.X, data.labels, data.T, data.order, data.w
    n = order.shape[0]
    loss_sum, pen_sum, correct = float(start[0]), float(start[1]), int(start[2])
    for j in batches:
        s = j * data.batch_size
        e = min(n, s + data.batch_size)
        rows = e - s
        idx = order[s:e]
        xb = _batch(X, sp, idx, s, e, data.shuffle)
        pick = (lambda a: a[idx]) if data.shuffle else (lambda a: a[s:e])
        lb = pick(labels) if labels.shape[0] else labels
        tb = pick(T) if T.shape[0] else T
        wb = pick(w) if w.shape[0] else w
        key = batch_key(opt.drop_seed, int(state.step[0]))
        pre = []
        outs = forward(model, xb, opt.dropout, key, pre)
        loss, c, dZ = head_loss(head, outs[-1], lb, tb, wb)
        backward(model, xb, outs, dZ, grad, opt.dropout, key, pre)
        norm = float(wb.sum()) if wb.shape[0] else float(rows)
        pen = apply_update(model, grad, state, opt, norm)
        loss_sum += loss * rows
        pen_sum += pen * rows
        correct += c
    return loss_sum, pen_sum, correct


def _chunks(X, sp, rows, cap):
    n = rows.shape[0] if is_sparse(sp) else X.shape[0]
    for s in range(0, n, cap):
        e = min(n, s + cap)
        yield s, e, _batch(X, sp, rows[s:e] if is_sparse(sp) else None, s, e, False)


def evaluate_batches(X, sp, rows, labels, T, model, head, work):
    """``kernels.train.evaluate_batches``: (sum of per-row losses, n_correct)."""
    loss_sum, correct = 0.0, 0
    none = np.empty(0, np.float64)
    for s, e, xb in _chunks(X, sp, rows, work.cap):
        loss, c, _ = head_loss(head, forward(model, xb)[-1],
                               labels[s:e] if labels.shape[0] else labels,
                               T[s:e] if T.shape[0] else T, none)
        loss_sum += loss * (e - s)
        correct += c
    return loss_sum, correct


def predict_batches(X, sp, rows, model, head, work, out):
    """``kernels.train.predict_batches``: logits (``head.code < 0``) or the
    head's output of every row into ``out``; returns the number of NaN/inf
    values in a dense X."""
    # Dense X: the compiled driver keeps its own scratch and ``work`` is
    # minimal (one row), so chunk by EVAL_ROWS, not by work.cap.
    cap = work.cap if is_sparse(sp) else max(work.cap, EVAL_ROWS)
    for s, e, xb in _chunks(X, sp, rows, cap):
        Z = forward(model, xb)[-1]
        out[s:e] = Z if head.code < 0 else HEAD_BY_CODE[int(head.code)].output(Z)
    return 0 if is_sparse(sp) else int(X.size - np.count_nonzero(np.isfinite(X)))


def full_batch_gradient(X, labels, T, w, model, head, work, grad, total):
    """``kernels.train.full_batch_gradient``: the (weighted) mean loss over
    X, and its gradient into ``total``, ``work.cap`` rows at a time."""
    n = X.shape[0]
    weighted = w.shape[0] > 0
    w_total = float(w.sum()) if weighted else 0.0
    total[:] = 0
    loss = 0.0
    for s in range(0, n, work.cap):
        e = min(n, s + work.cap)
        wc = w[s:e] if weighted else w
        xb = X[s:e]
        pre = []
        outs = forward(model, xb, pre=pre)
        chunk_loss, _, dZ = head_loss(head, outs[-1], labels[s:e] if labels.shape[0] else labels,
                                      T[s:e] if T.shape[0] else T, wc)
        backward(model, xb, outs, dZ, grad, pre=pre)
        if weighted:
            share = float(wc.sum()) / w_total if w_total > 0 else 0.0
        else:
            share = (e - s) / n
        loss += chunk_loss * share
        total += grad * total.dtype.type(share)
    return loss
