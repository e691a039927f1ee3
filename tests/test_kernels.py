"""Loss heads, activations, updates and shuffling against the NumPy reference."""
import numpy as np
import pytest

NO_W = np.empty(0, np.float64)  # no sample weights

from conftest import DTYPES, assert_close
from fastnn import reference as R
from fastnn.kernels import losses as L
from fastnn.kernels import optim, train
from fastnn.kernels.activations import CODES, act_forward, act_grad
from fastnn.kernels.bundles import Loss

HEAD_SHAPES = [(1, 1), (1, 10), (7, 3), (100, 10), (33, 17)]


def _targets(rng, head, B, K, dtype):
    if head == "softmax":
        return rng.integers(0, K, B), np.zeros((0, K), dtype)
    if head == "sigmoid":
        return np.zeros(0, np.int64), rng.random((B, K)).round().astype(dtype)
    if head == "poisson":
        return np.zeros(0, np.int64), rng.poisson(2.0, (B, K)).astype(dtype)
    return np.zeros(0, np.int64), rng.standard_normal((B, K)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head", list(L.CODES))
@pytest.mark.parametrize("B,K", HEAD_SHAPES)
def test_loss_head_matches_reference(rng, dtype, head, B, K):
    Z = (3 * rng.standard_normal((B, K))).astype(dtype)
    labels, T = _targets(rng, head, B, K, dtype)
    dZ = np.full((B, K), np.nan, dtype)
    loss, correct = L.loss_forward_backward(Loss(L.CODES[head], 1.0, 0.0), Z, labels, T, NO_W,
                                            dZ)
    y = labels if head == "softmax" else T
    ref_loss, ref_dz = R.LOSSES[head](Z.astype(np.float64), y)
    assert_close(loss, ref_loss, dtype, what=f"{head} loss")
    assert_close(dZ, ref_dz, dtype, what=f"{head} gradient")
    assert correct == R.n_correct(Z.astype(np.float64), y, head)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_ce_gradient_is_p_minus_onehot_over_n(dtype):
    Z = np.array([[0.0, 0.0], [np.log(3.0), 0.0]], dtype)
    dZ = np.empty_like(Z)
    loss, correct = L.softmax_ce_forward_backward(Z, np.array([0, 1]), NO_W, dZ)
    # row 0: p = (1/2, 1/2), t = 0; row 1: p = (3/4, 1/4), t = 1
    assert_close(dZ, np.array([[-0.25, 0.25], [0.375, -0.375]]), dtype)
    assert_close(loss, (np.log(2) + np.log(4)) / 2, dtype)
    assert correct == 1  # row 0 ties -> argmax 0 is right; row 1 predicts 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_whole_batch_softmax_on_the_pool_gives_the_serial_gradient(dtype, weighted, smoothing):
    # From PARALLEL_SOFTMAX_MIN logits a whole batch's rows run on the pool
    # and their loss terms are added in row order: the count exactly, the
    # gradient and the loss to their last bits (each compilation may
    # associate a row's sum of exps, and the serial loop fuses each row's
    # weight into the loss).
    rng = np.random.default_rng(5)
    B, K = 331, L.PARALLEL_SOFTMAX_MIN // 331 + 1
    Z = (rng.standard_normal((B, K)) * 4).astype(dtype)
    labels = rng.integers(0, K, B)
    w = rng.random(B) if weighted else NO_W
    dZ, dZp = np.empty_like(Z), np.empty_like(Z)
    head = Loss(L.SOFTMAX_CE, 1.0, smoothing)
    serial = L.softmax_ce_forward_backward(Z, labels, w, dZ, False, smoothing)
    pooled = L.batch_loss_forward_backward(head, Z, labels, NO_W[:0].reshape(0, 0).astype(dtype),
                                           w, dZp)
    assert serial[1] == pooled[1] > 0
    assert pooled[0] == pytest.approx(serial[0], rel=1e-14)
    # (Smoothing's dZ = p / B - a / (K B) cancels near zero: the bound is on
    # the scale of dZ, not of each entry.)
    tol = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(dZp, dZ, rtol=tol, atol=tol * np.abs(dZ).max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_ce_stable_for_huge_logits(dtype):
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype)
    dZ = np.empty_like(Z)
    loss, _ = L.softmax_ce_forward_backward(Z, np.array([1, 2, 0]), NO_W, dZ)
    assert np.isfinite(loss) and np.isfinite(dZ).all()
    # row 0 picks a class 2e4 below the max; rows 1-2 are uniform-ish.
    assert_close(loss, (2e4 + np.log(3) + np.log(2)) / 3, dtype)
    P = np.empty_like(Z)
    L.head_output(L.SOFTMAX_CE, Z, P)
    assert np.isfinite(P).all()
    assert_close(P.sum(axis=1), np.ones(3), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_stable_for_huge_inputs(dtype):
    Z = np.array([[1e4, -1e4, 0.0, 40.0, -40.0]], dtype)
    P = np.empty_like(Z)
    L.head_output(L.SIGMOID_BCE, Z, P)
    assert np.isfinite(P).all()
    assert_close(P[0, :3], [1.0, 0.0, 0.5], dtype)
    dZ = np.empty_like(Z)
    T = np.array([[1, 0, 1, 0, 1]], dtype)
    loss, _ = L.sigmoid_bce_forward_backward(Z, T, NO_W, dZ)
    assert np.isfinite(loss) and np.isfinite(dZ).all()
    assert_close(loss, np.log(2) + 40 + 40, dtype)
    assert act_forward(dtype(1e4), CODES["sigmoid"]) == 1.0
    assert act_forward(dtype(-1e4), CODES["sigmoid"]) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [a for a in CODES if a in R.ACTIVATIONS])  # others: test_registry
def test_activation_scalars_match_reference(rng, dtype, act):
    x = (4 * rng.standard_normal(50)).astype(dtype)
    f, fgrad = R.ACTIVATIONS[act]
    y = np.array([act_forward(v, CODES[act]) for v in x])
    assert_close(y, f(x.astype(np.float64)), dtype, what=act)
    g = np.array([act_grad(v, CODES[act]) for v in y.astype(dtype)])
    assert_close(g, fgrad(y.astype(dtype).astype(np.float64)), dtype, what=act + " grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 4096, 10001])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_updates_match_reference(rng, dtype, n, momentum, nesterov):
    theta = rng.standard_normal(n).astype(dtype)
    grad = rng.standard_normal(n).astype(dtype)
    vel = rng.standard_normal(n).astype(dtype)
    ref_p, ref_v = theta.astype(np.float64), vel.astype(np.float64)
    lr = 0.3
    for step in range(3):
        R.sgd_step([(ref_p, ref_p[:0])], [(grad.astype(np.float64), ref_p[:0])], lr,
                   [[ref_v, ref_v[:0]]], momentum, nesterov)
        if momentum == 0:
            optim.sgd_update(theta, grad, dtype(lr))
        else:
            optim.momentum_update(theta, grad, vel, dtype(lr), dtype(momentum), nesterov)
    assert_close(theta, ref_p, dtype, what="theta")
    if momentum:
        assert_close(vel, ref_v, dtype, what="velocity")


def test_shuffle_is_a_seeded_permutation():
    def perm(seed, n=1000):
        order = np.arange(n)
        train.shuffle_inplace(order, np.array([seed], np.uint64))
        return order
    a, b, c = perm(1), perm(1), perm(2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(np.sort(a), np.arange(1000))
    assert (a != np.arange(1000)).mean() > 0.9
    # Roughly uniform: element 0 lands in each tenth about equally often.
    hits = np.zeros(10)
    state = np.array([7], np.uint64)
    for _ in range(2000):
        order = np.arange(10)
        train.shuffle_inplace(order, state)
        hits[np.argmax(order == 0)] += 1
    assert hits.min() > 140 and hits.max() < 260


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_nonpositive_is_within_one_ulp_of_exp(dtype):
    from numba import njit

    from fastnn.kernels.activations import exp_nonpositive

    @njit
    def run(x, out):
        for i in range(x.shape[0]):
            out[i] = exp_nonpositive(x[i])

    x = -np.concatenate([np.linspace(0, 2, 20001), np.geomspace(1e-30, 800, 20001),
                         [0.0, 87.3, 87.4, 708.3, 708.5, 1e10, np.inf]]).astype(dtype)
    out = np.empty_like(x)
    run(x, out)
    exact = np.exp(x.astype(np.float64))
    normal = exact >= np.finfo(dtype).tiny
    ulps = np.abs(out[normal] - exact[normal]) / np.spacing(exact[normal].astype(dtype))
    assert ulps.max() <= 1.0
    assert np.all(out[~normal] == 0)  # below the smallest normal result: 0, never garbage
    nan = np.array([np.nan], dtype)
    run(nan, nan)
    assert np.isnan(nan[0])
