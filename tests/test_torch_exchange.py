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
    (lambda: torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3),
                                 torch.nn.Tanh(), torch.nn.Linear(3, 2)), "one hidden activation"),
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
