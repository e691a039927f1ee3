"""The same math in plain NumPy: the oracle for the tests and the baseline
for the benchmarks.

Written to be read, one short function per step, following the classic
"from scratch" layer structure. Parameters are a list of ``(W, b)`` pairs
with ``W`` of shape ``(fan_in, fan_out)``; ``y`` is integer labels for the
softmax head and a float ``(N, K)`` array for the others. Nothing here is
fast or clever on purpose.
"""
import numpy as np

__all__ = ["affine_forward", "affine_backward", "relu", "relu_grad", "sigmoid", "sigmoid_grad",
           "tanh", "tanh_grad", "identity", "identity_grad", "softmax",
           "softmax_cross_entropy", "sigmoid_binary_cross_entropy", "squared_error",
           "poisson_deviance", "absolute_error", "huber", "output_probabilities", "n_correct",
           "forward", "gradients", "sgd_step", "adam_step", "l2_penalty", "zeros_like_params",
           "Optimizer", "train_step", "train_epoch", "evaluate", "ACTIVATIONS", "LOSSES"]


# --- affine ---------------------------------------------------------------
def affine_forward(x, W, b):
    return x @ W + b


def affine_backward(dout, x, W):
    """Returns (dx, dW, db) for ``out = x @ W + b``."""
    return dout @ W.T, x.T @ dout, dout.sum(axis=0)


# --- activations and their derivatives (from the output y) ----------------
def relu(x):
    return np.maximum(x, 0)


def relu_grad(y):
    return (y > 0).astype(y.dtype)


def sigmoid(x):
    # exp of a non-positive number only, so no overflow for large |x|.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_grad(y):
    return y * (1 - y)


def tanh(x):
    return np.tanh(x)


def tanh_grad(y):
    return 1 - y * y


def identity(x):
    return x


def identity_grad(y):
    return np.ones_like(y)


ACTIVATIONS = {
    "relu": (relu, relu_grad),
    "sigmoid": (sigmoid, sigmoid_grad),
    "tanh": (tanh, tanh_grad),
    "identity": (identity, identity_grad),
}


# --- loss heads: (loss averaged over rows, dLoss/dz) -----------------------
def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(z, labels):
    n = z.shape[0]
    m = z.max(axis=1, keepdims=True)
    logp = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(n), labels].mean()
    dz = softmax(z)
    dz[np.arange(n), labels] -= 1
    return loss, dz / n


def sigmoid_binary_cross_entropy(z, t):
    n = z.shape[0]
    # softplus(z) - t*z == -t log(s) - (1-t) log(1-s), written stably.
    loss = (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))) - t * z).sum() / n
    return loss, (sigmoid(z) - t) / n


def squared_error(z, t):
    n = z.shape[0]
    d = z - t
    return 0.5 * (d * d).sum() / n, d / n


def poisson_deviance(z, t):
    """Half Poisson deviance with a log link (prediction exp(z)), summed
    over outputs, mean over rows: scikit-learn's MLPRegressor(loss="poisson")."""
    n = z.shape[0]
    mu = np.exp(z)
    tlogt = np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0)
    return (tlogt - t * z - t + mu).sum() / n, (mu - t) / n


def absolute_error(z, t):
    n = z.shape[0]
    d = z - t
    return np.abs(d).sum() / n, np.sign(d) / n


def huber(z, t, delta=1.0):
    """Squared error within ``delta``, linear beyond (torch.nn.HuberLoss),
    summed over outputs, mean over rows."""
    n = z.shape[0]
    d = z - t
    quadratic = np.abs(d) <= delta
    loss = np.where(quadratic, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta))
    return loss.sum() / n, np.where(quadratic, d, delta * np.sign(d)) / n


def output_probabilities(z, output):
    if output == "softmax":
        return softmax(z)
    if output == "sigmoid":
        return sigmoid(z)
    if output == "poisson":
        return np.exp(z)
    return z


LOSSES = {
    "softmax": softmax_cross_entropy,
    "sigmoid": sigmoid_binary_cross_entropy,
    "identity": squared_error,
    "poisson": poisson_deviance,
    "absolute_error": absolute_error,
    "huber": huber,
}


def n_correct(z, y, output):
    if output == "softmax":
        return int((z.argmax(axis=1) == y).sum())
    if output == "sigmoid":
        return int(((z > 0) == (y > 0.5)).all(axis=1).sum())
    return 0


# --- whole network ----------------------------------------------------------
def forward(params, x, hidden="relu"):
    """Returns the list of layer outputs; the last one is the logits."""
    act, _ = ACTIVATIONS[hidden]
    outs = []
    h = x
    for i, (W, b) in enumerate(params):
        u = affine_forward(h, W, b)
        h = u if i == len(params) - 1 else act(u)
        outs.append(h)
    return outs


def gradients(params, x, y, hidden="relu", output="softmax"):
    """(loss, [(dW, db), ...]) by backpropagation."""
    _, act_grad = ACTIVATIONS[hidden]
    outs = forward(params, x, hidden)
    loss, du = LOSSES[output](outs[-1], y)
    grads = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        W, _ = params[i]
        h_in = x if i == 0 else outs[i - 1]
        dx, dW, db = affine_backward(du, h_in, W)
        grads[i] = (dW, db)
        if i > 0:
            du = dx * act_grad(outs[i - 1])
    return loss, grads


def sgd_step(params, grads, lr, velocity=None, momentum=0.0, nesterov=False):
    """W <- W - lr dW (or the momentum/Nesterov form); updates in place."""
    for i, ((W, b), (dW, db)) in enumerate(zip(params, grads)):
        for p, g, j in ((W, dW, 0), (b, db, 1)):
            if momentum == 0:
                p -= lr * g
            else:
                v = velocity[i][j]
                v *= momentum
                v -= lr * g
                p += momentum * v - lr * g if nesterov else v


def adam_step(params, grads, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """Adam at step ``t`` (1-based), the bias correction folded into the
    step size as in Kingma & Ba section 2 and scikit-learn; ``m``/``v`` are
    lists of ``[mW, mb]`` pairs, updated in place."""
    lr_t = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
    for i, ((W, b), (dW, db)) in enumerate(zip(params, grads)):
        for p, g, j in ((W, dW, 0), (b, db, 1)):
            m[i][j] = beta1 * m[i][j] + (1 - beta1) * g
            v[i][j] = beta2 * v[i][j] + (1 - beta2) * g * g
            p -= lr_t * m[i][j] / (np.sqrt(v[i][j]) + eps)


def l2_penalty(params, grads, coef):
    """Adds ``coef * W`` to each weight gradient (biases are not penalised)
    and returns the penalty ``0.5 * coef * sum(W**2)``."""
    sq = 0.0
    for (W, _), (dW, _) in zip(params, grads):
        dW += coef * W
        sq += float((W * W).sum())
    return 0.5 * coef * sq


def zeros_like_params(params):
    return [[np.zeros_like(W), np.zeros_like(b)] for W, b in params]


class Optimizer:
    """Optimizer state for :func:`train_epoch`: ``"sgd"`` (momentum,
    Nesterov) or ``"adam"``, with an optional L2 penalty ``l2`` per batch
    (divided by the batch's rows when ``l2_per_row``, scikit-learn's
    ``alpha``)."""

    def __init__(self, params, kind="sgd", lr=0.1, momentum=0.0, nesterov=False,
                 beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0, l2_per_row=False):
        self.kind, self.lr, self.momentum, self.nesterov = kind, lr, momentum, nesterov
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.l2, self.l2_per_row = l2, l2_per_row
        self.m = zeros_like_params(params)
        self.v = zeros_like_params(params)
        self.t = 0

    def step(self, params, grads, rows):
        """Updates ``params`` in place; returns the batch's L2 penalty."""
        penalty = 0.0
        if self.l2 > 0:
            penalty = l2_penalty(params, grads, self.l2 / rows if self.l2_per_row else self.l2)
        self.t += 1
        if self.kind == "adam":
            adam_step(params, grads, self.m, self.v, self.t, self.lr, self.beta1,
                      self.beta2, self.eps)
        else:
            sgd_step(params, grads, self.lr, self.m, self.momentum, self.nesterov)
        return penalty


def train_step(params, x, y, lr, hidden="relu", output="softmax",
               velocity=None, momentum=0.0, nesterov=False):
    loss, grads = gradients(params, x, y, hidden, output)
    sgd_step(params, grads, lr, velocity, momentum, nesterov)
    return loss


def train_epoch(params, x, y, lr, batch_size, hidden="relu", output="softmax",
                velocity=None, momentum=0.0, nesterov=False, order=None, optimizer=None):
    """One epoch of mini-batch SGD over rows in ``order`` (default: as
    given). Returns the mean of the per-batch losses weighted by rows.
    With an :class:`Optimizer` ``optimizer``, it does the update (and
    ``lr``/``velocity``/``momentum``/``nesterov`` are ignored) and the
    losses include its L2 penalty."""
    n = x.shape[0]
    order = np.arange(n) if order is None else order
    total = 0.0
    for s in range(0, n, batch_size):
        idx = order[s:s + batch_size]
        if optimizer is None:
            loss = train_step(params, x[idx], y[idx], lr, hidden, output, velocity, momentum,
                              nesterov)
        else:
            loss, grads = gradients(params, x[idx], y[idx], hidden, output)
            loss += optimizer.step(params, grads, len(idx))
        total += len(idx) * loss
    return total / n


def evaluate(params, x, y, hidden="relu", output="softmax"):
    z = forward(params, x, hidden)[-1]
    loss, _ = LOSSES[output](z, y)
    return loss, n_correct(z, y, output) / x.shape[0]
