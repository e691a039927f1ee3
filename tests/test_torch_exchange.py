"""Network <-> torch.nn.Sequential (skipped without PyTorch)."""
import numpy as np
import pytest

import fastnn
from fastnn.engine.registry import ACTIVATIONS

pytestmark = pytest.mark.both_backends

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("hidden", list(ACTIVATIONS))
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity", "poisson"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_to_torch_and_back_give_the_same_outputs(rng, hidden, output, dtype):
    net = fastnn.Network([7, 9, 5, 3], hidden=hidden, output=output, dtype=dtype, seed=2)
    x = rng.standard_normal((20, 7)).astype(dtype)
    seq = net.to_torch()
    with torch.no_grad():
        out = seq(torch.from_numpy(x)).numpy()
    tol = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out, net.predict_proba(x), rtol=tol, atol=tol)
    if output != "poisson":  # the exp module is fastnn's own, not a torch layer
        back = fastnn.Network.from_torch(seq)
        assert back.layers == net.layers and back.hidden == net.hidden
        assert back.output == net.output and back.dtype == net.dtype
        np.testing.assert_array_equal(back.theta, net.theta)


def test_a_torch_trained_stack_predicts_the_same_in_fastnn(rng):
    seq = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3),
                              torch.nn.Softmax(dim=1))
    x = rng.standard_normal((30, 4)).astype(np.float32)
    net = fastnn.Network.from_torch(seq)
    with torch.no_grad():
        np.testing.assert_allclose(net.predict_proba(x), seq(torch.from_numpy(x)).numpy(),
                                   rtol=1e-6, atol=1e-6)
    net.fit(x, rng.integers(0, 3, 30), epochs=1, batch_size=10)  # and trains on


@pytest.mark.parametrize("seq, words", [
    (lambda: torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Tanh(),
                                 torch.nn.Linear(8, 2)), "follows another activation"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(), torch.nn.Linear(8, 3)),
     "Dropout"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(4, 8, bias=False)), "no bias"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(5, 3)), "followed by"),
    (lambda: torch.nn.Sequential(torch.nn.ReLU()), "between Linear"),
])
def test_from_torch_rejects_what_a_network_cannot_hold(seq, words):
    with pytest.raises(ValueError, match=words):
        fastnn.Network.from_torch(seq())
    with pytest.raises(TypeError, match="Sequential"):
        fastnn.Network.from_torch(torch.nn.Linear(2, 2))


OPTIMIZER_CASES = {  # fastnn's fit settings -> torch.optim keywords, the same rule
    "sgd": (dict(momentum=0.9, nesterov=True), dict(momentum=0.9, nesterov=True)),
    "rmsprop": (dict(beta2=0.95, eps=1e-7), dict(alpha=0.95, eps=1e-7)),
    "adagrad": (dict(eps=1e-9), dict(eps=1e-9)),
    "adamw": (dict(beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.05),
              dict(betas=(0.8, 0.99), eps=1e-7, weight_decay=0.05)),
}


@pytest.mark.parametrize("name", list(OPTIMIZER_CASES))
def test_each_optimizer_follows_torch_optim_for_20_steps(rng, name):
    """From the same weights, 20 full-batch steps of fit(optimizer=name)
    and of the torch.optim class the registry names for it end at the same
    weights, to float64 rounding."""
    from fastnn.engine.registry import OPTIMIZERS

    ours, theirs = OPTIMIZER_CASES[name]
    x = rng.standard_normal((40, 5))
    y = rng.integers(0, 3, 40)
    net = fastnn.Network([5, 8, 3], hidden="tanh", dtype="float64", seed=0)
    seq = net.to_torch()[:-1]  # the logits: CrossEntropyLoss applies the softmax
    opt = getattr(torch.optim, OPTIMIZERS[name].torch)(seq.parameters(), lr=0.02, **theirs)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(seq(X), Y).backward()
        opt.step()
    net.fit(x, y, epochs=20, batch_size=40, shuffle=False, lr=0.02, optimizer=name, **ours)
    back = fastnn.Network.from_torch(torch.nn.Sequential(*seq, torch.nn.Softmax(dim=1)))
    np.testing.assert_allclose(net.theta, back.theta, rtol=1e-9, atol=1e-12)
    assert not np.allclose(net.theta, fastnn.Network([5, 8, 3], hidden="tanh", dtype="float64",
                                                     seed=0).theta)


LOSS_CASES = {  # Network settings, fit settings, the torch loss of the logits, clip
    "label_smoothing": (dict(label_smoothing=0.2), {},
                        lambda z, y: torch.nn.functional.cross_entropy(z, y, label_smoothing=0.2),
                        None),
    "huber": (dict(output="huber", delta=0.3), {},
              lambda z, t: torch.nn.functional.huber_loss(z, t, delta=0.3), None),
    "absolute_error": (dict(output="absolute_error"), {},
                       lambda z, t: torch.nn.functional.l1_loss(z, t), None),
    "clip_norm+sgd": ({}, dict(clip_norm=0.05, momentum=0.9),
                      lambda z, y: torch.nn.functional.cross_entropy(z, y), 0.05),
    "clip_norm+adamw": ({}, dict(clip_norm=0.05, optimizer="adamw"),
                        lambda z, y: torch.nn.functional.cross_entropy(z, y), 0.05),
    "gelu": (dict(hidden="gelu"), {},
             lambda z, y: torch.nn.functional.cross_entropy(z, y), None),
    "silu": (dict(hidden=["silu", "gelu"]), {},
             lambda z, y: torch.nn.functional.cross_entropy(z, y), None),
}


@pytest.mark.parametrize("name", list(LOSS_CASES))
def test_each_loss_activation_and_clipping_follows_torch_for_20_steps(rng, name):
    """From the same weights, 20 full-batch steps of fastnn and of torch
    with its loss (one regression output: torch's mean over elements is
    fastnn's mean over rows), activation or clip_grad_norm_ end at the
    same weights, to float64 rounding."""
    net_kw, fit_kw, loss_fn, clip = LOSS_CASES[name]
    net_kw = dict(dict(hidden="tanh"), **net_kw)
    regression = net_kw.get("output") in ("huber", "absolute_error")
    layers = [5, 8, 6, 1] if regression else [5, 8, 6, 3]
    x = rng.standard_normal((40, 5))
    y = rng.standard_normal((40, 1)) if regression else rng.integers(0, 3, 40)
    net = fastnn.Network(layers, dtype="float64", seed=0, **net_kw)
    start = net.theta.copy()
    seq = net.to_torch()
    if not regression:
        seq = seq[:-1]  # the logits: cross_entropy applies the softmax
    optimizer = fit_kw.get("optimizer", "sgd")
    torch_kw = dict(momentum=fit_kw["momentum"]) if "momentum" in fit_kw else {}
    opt = getattr(torch.optim, {"sgd": "SGD", "adamw": "AdamW"}[optimizer])(
        seq.parameters(), lr=0.05, **torch_kw)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(20):
        opt.zero_grad()
        loss_fn(seq(X), Y).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(seq.parameters(), clip)
        opt.step()
    net.fit(x, y, epochs=20, batch_size=40, shuffle=False, lr=0.05, **fit_kw)
    back = fastnn.Network.from_torch(seq if regression else
                                     torch.nn.Sequential(*seq, torch.nn.Softmax(dim=1)))
    np.testing.assert_allclose(net.theta, back.theta, rtol=1e-9, atol=1e-12)
    assert not np.allclose(net.theta, start)
