"""The operations a network is made of, each declared once.

One table per kind of operation: hidden-layer activations, output heads
(an output non-linearity with its loss) and optimizers. An entry names what
users type (``Network``, the estimators, the command line), the kernels'
code for it (the compiled branch lives in :mod:`fastnn.kernels`, which
Numba needs), its NumPy form (what :mod:`.numpy_engine` runs while the
kernels compile) and its ONNX and PyTorch equivalents. Validation, the NumPy
backend, the estimators' name maps and the ONNX / PyTorch exchange read
their tables from here; ``tests/test_registry.py`` fails when a declared
operation lacks a kernel branch, a NumPy form or an export.

Activations take their derivative from the layer's *output* ``y = f(x)``:
the kernels keep only a layer's output for the backward pass, except for
an activation whose output does not determine its input (GELU, SiLU:
``from_input``), whose layers keep their pre-activations too.
"""
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

from ..kernels import activations as _act
from ..kernels import losses as _loss
from ..kernels.bundles import ADAGRAD, ADAM, ADAMW, RMSPROP, SGD, Loss


# --- hidden-layer activations ------------------------------------------------
class Activation(NamedTuple):
    name: str                    # what Network(hidden=...) and the CLI take
    code: np.int64               # its branch in kernels.activations.act_forward / act_grad
    forward: Callable            # NumPy: y = f(x)
    derivative: Callable         # NumPy: f'(x), from y = f(x) (from x if from_input)
    sklearn: Optional[str]       # scikit-learn's name for it (MLP*.activation), or None
    # Its ONNX form: one node (op_type, attributes, constant inputs), or a
    # list of steps (op_type, attributes, inputs), an input being "x" (the
    # layer's), the index of an earlier step or a float constant; None: none.
    onnx: Any
    torch: tuple                 # (torch.nn class name, constructor keywords)
    from_input: bool = False     # the derivative needs x (kernels.activations.act_grad_input)


def _sigmoid(x):
    e = np.exp(-np.abs(x))  # exp of a non-positive number only: no overflow
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _erf(x):
    """erf elementwise in x's dtype: NumPy has none; scipy's when it is
    installed, else math.erf element by element (slower, the same values)."""
    try:
        from scipy.special import erf
    except ImportError:
        import math
        erf = np.vectorize(math.erf, otypes=[np.float64])
    return np.asarray(erf(x)).astype(x.dtype, copy=False)


ACTIVATIONS = {a.name: a for a in (
    Activation("identity", _act.IDENTITY, lambda x: x, np.ones_like,
               "identity", None, ("Identity", {})),
    Activation("relu", _act.RELU, lambda x: np.maximum(x, 0),
               lambda y: (y > 0).astype(y.dtype), "relu", ("Relu", {}, ()), ("ReLU", {})),
    Activation("sigmoid", _act.SIGMOID, _sigmoid, lambda y: y * (1 - y),
               "logistic", ("Sigmoid", {}, ()), ("Sigmoid", {})),
    Activation("tanh", _act.TANH, np.tanh, lambda y: 1 - y * y,
               "tanh", ("Tanh", {}, ()), ("Tanh", {})),
    Activation("leaky_relu", _act.LEAKY_RELU,
               lambda x: np.where(x > 0, x, x * x.dtype.type(_act.LEAKY_SLOPE)),
               lambda y: np.where(y > 0, 1, _act.LEAKY_SLOPE).astype(y.dtype),
               "leaky_relu", ("PRelu", {}, (_act.LEAKY_SLOPE,)),
               ("LeakyReLU", {"negative_slope": _act.LEAKY_SLOPE})),
    Activation("elu", _act.ELU, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
               lambda y: np.where(y > 0, 1, y + 1).astype(y.dtype),
               # relu(x) + min(exp(x) - 1, 0): onnxruntime has no float64 Elu.
               "elu", [("Exp", {}, ("x",)), ("Sub", {}, (0, 1.0)), ("Min", {}, (1, 0.0)),
                       ("Relu", {}, ("x",)), ("Add", {}, (3, 2))], ("ELU", {})),
    Activation("softplus", _act.SOFTPLUS,
               lambda x: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))),
               # relu(x) + log(1 + exp(-|x|)): onnxruntime has no float64 Softplus.
               lambda y: -np.expm1(-y), "softplus",
               [("Abs", {}, ("x",)), ("Neg", {}, (0,)), ("Exp", {}, (1,)),
                ("Add", {}, (2, 1.0)), ("Log", {}, (3,)), ("Relu", {}, ("x",)),
                ("Add", {}, (5, 4))], ("Softplus", {})),
    # The exact GELU, x * Phi(x) = x/2 (1 + erf(x / sqrt 2)). ONNX's Gelu op
    # needs opset 20; Erf is in every opset fastnn exports, but onnxruntime
    # has no float64 Erf, so erf runs in float32 (a float64 model's GELU
    # agrees with predict_proba to ~1e-7, not to rounding).
    Activation("gelu", _act.GELU, lambda x: x * (0.5 + 0.5 * _erf(x * np.sqrt(0.5))),
               lambda x: (0.5 + 0.5 * _erf(x * np.sqrt(0.5))
                          + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)).astype(x.dtype),
               "gelu", [("Mul", {}, ("x", float(np.sqrt(0.5)))), ("Cast", {"to": 1}, (0,)),
                        ("Erf", {}, (1,)), ("CastLike", {}, (2, "x")), ("Add", {}, (3, 1.0)),
                        ("Mul", {}, ("x", 4)), ("Mul", {}, (5, 0.5))],
               ("GELU", {}), from_input=True),
    Activation("silu", _act.SILU, lambda x: x * _sigmoid(x),
               lambda x: (_sigmoid(x) * (1 + x * (1 - _sigmoid(x)))).astype(x.dtype), "silu",
               [("Sigmoid", {}, ("x",)), ("Mul", {}, ("x", 0))], ("SiLU", {}),
               from_input=True),
)}
ACTIVATION_BY_CODE = {int(a.code): a for a in ACTIVATIONS.values()}


def keeps_input(acts):
    """Whether training layers with activation codes ``acts`` keep their
    pre-activations (``Work.ubuf``)."""
    return any(ACTIVATION_BY_CODE[int(a)].from_input for a in acts)
# scikit-learn's activation names (MLPClassifier(activation=...)) -> ours.
SKLEARN_ACTIVATIONS = {a.sklearn: a.name for a in ACTIVATIONS.values() if a.sklearn}


# --- output heads: the output non-linearity and its loss ---------------------
class Head(NamedTuple):
    name: str                    # what Network(output=...) and the CLI take
    code: int                    # its branch in kernels.losses (loss_forward_backward, head_output)
    rows: Callable               # NumPy: (z, labels, T, loss) -> (per-row loss, per-row dE/dz);
    #                              loss: the kernels' Loss (code and settings)
    output: Callable             # NumPy: predict_proba from the logits z
    correct: Optional[Callable]  # NumPy: (z, labels, T) -> rows right; None: regression
    sklearn: str                 # scikit-learn's out_activation_
    onnx: Optional[tuple]        # the node after the last Gemm, as Activation.onnx; None: none
    torch: Optional[str]         # the final torch.nn module's class name; None: none


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _softmax_rows(z, labels, T, loss):
    # Label smoothing a: the target is (1-a) onehot + a/K.
    a = loss.smoothing
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(z.shape[0])
    dz = e / s
    per = np.log(s[:, 0]) + m[:, 0]
    if a > 0:
        dz -= a / z.shape[1]
        dz[rows, labels] -= 1 - a
        return per - (1 - a) * z[rows, labels] - a / z.shape[1] * z.sum(axis=1), dz
    dz[rows, labels] -= 1
    return per - z[rows, labels], dz


def _sigmoid_rows(z, labels, T, loss):
    # softplus(z) - t*z == -t log(s) - (1-t) log(1-s), written stably;
    # label smoothing a: the target t (1-a) + a/2.
    T = T * (1.0 - loss.smoothing) + 0.5 * loss.smoothing
    per = np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))) - T * z
    return per.sum(axis=1), _sigmoid(z) - T


def _squared_rows(z, labels, T, loss):
    d = z - T
    return 0.5 * (d * d).sum(axis=1), d


def _absolute_rows(z, labels, T, loss):
    d = z - T
    return np.abs(d).sum(axis=1), np.sign(d)


def _huber_rows(z, labels, T, loss):
    d = z - T
    a, delta = np.abs(d), loss.delta
    per = np.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta))
    return per.sum(axis=1), np.clip(d, -delta, delta)


def _poisson_rows(z, labels, T, loss):
    # Half Poisson deviance with a log link (prediction exp(z)).
    mu = np.exp(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        tlogt = np.where(T > 0, T * np.log(np.where(T > 0, T, 1.0)), 0.0)
    return (tlogt - T * z - T + mu).sum(axis=1), mu - T


HEADS = {h.name: h for h in (
    Head("softmax", _loss.SOFTMAX_CE, _softmax_rows, _softmax,
         lambda z, labels, T: int((z.argmax(axis=1) == labels).sum()),
         "softmax", ("Softmax", {"axis": 1}, ()), "Softmax"),
    Head("sigmoid", _loss.SIGMOID_BCE, _sigmoid_rows, _sigmoid,
         lambda z, labels, T: int(((_sigmoid(z) > 0.5) == (T > 0.5)).all(axis=1).sum()),
         "logistic", ("Sigmoid", {}, ()), "Sigmoid"),
    Head("identity", _loss.IDENTITY_MSE, _squared_rows, lambda z: z, None,
         "identity", None, None),
    Head("poisson", _loss.EXP_POISSON, _poisson_rows, np.exp, None,
         "exp", ("Exp", {}, ()), "Exp"),
    Head("absolute_error", _loss.ABSOLUTE_ERROR, _absolute_rows, lambda z: z, None,
         "identity", None, None),
    Head("huber", _loss.HUBER, _huber_rows, lambda z: z, None, "identity", None, None),
)}
HEAD_BY_CODE = {h.code: h for h in HEADS.values()}
REGRESSION_HEADS = tuple(h.name for h in HEADS.values() if h.correct is None)


def loss_of(output, delta=1.0, label_smoothing=0.0):
    """The kernels' :class:`~fastnn.kernels.bundles.Loss` of head ``output``
    (names checked by the caller): Huber's ``delta``, softmax's label
    smoothing (each read by its head only)."""
    return Loss(int(HEADS[output].code), float(delta), float(label_smoothing))


# --- optimizers ----------------------------------------------------------------
class OptimizerRule(NamedTuple):
    name: str                    # what fit(optimizer=...) and the CLI take
    kind: int                    # kernels.bundles kind: its branch in kernels.train.apply_update
    settings: tuple              # the Optimizer fields it reads besides lr and l2
    second_moment: bool          # keeps OptimizerState.sq (else it stays empty)
    step: Callable               # NumPy: step(theta, grad, state, opt, lr) in place
    torch: str                   # the torch.optim class with the same trajectory


def _sgd_step(theta, grad, state, opt, lr):
    dt = theta.dtype.type
    if opt.momentum == 0:
        theta -= dt(lr) * grad
        return
    vel, mu, lr = state.vel, dt(opt.momentum), dt(lr)
    vel *= mu
    vel -= lr * grad
    if opt.nesterov:
        theta += mu * vel - lr * grad
    else:
        theta += vel


def _moments(grad, state, opt):
    """Adam's and AdamW's moment updates, in place; returns (m, v)."""
    dt = grad.dtype.type
    b1, b2 = dt(opt.beta1), dt(opt.beta2)
    m, v = state.vel, state.sq
    m *= b1
    m += (dt(1) - b1) * grad
    v *= b2
    v += (dt(1) - b2) * grad * grad
    return m, v


def _adam_step(theta, grad, state, opt, lr):
    # lr is the bias-corrected step size (see step_size).
    dt = theta.dtype.type
    m, v = _moments(grad, state, opt)
    theta -= dt(lr) * m / (np.sqrt(v) + dt(opt.eps))


def _adamw_step(theta, grad, state, opt, lr):
    # torch.optim.AdamW: decay, then Adam with eps added to sqrt(v_hat).
    dt = theta.dtype.type
    m, v = _moments(grad, state, opt)
    eps_t = opt.eps * np.sqrt(1.0 - opt.beta2 ** int(state.step[0]))
    theta *= dt(1.0 - opt.lr * opt.decay)
    theta -= dt(lr) * m / (np.sqrt(v) + dt(eps_t))


def _rmsprop_step(theta, grad, state, opt, lr):
    dt = theta.dtype.type
    b2, v = dt(opt.beta2), state.sq
    v *= b2
    v += (dt(1) - b2) * grad * grad
    theta -= dt(lr) * grad / (np.sqrt(v) + dt(opt.eps))


def _adagrad_step(theta, grad, state, opt, lr):
    dt = theta.dtype.type
    v = state.sq
    v += grad * grad
    theta -= dt(lr) * grad / (np.sqrt(v) + dt(opt.eps))


OPTIMIZERS = {o.name: o for o in (
    OptimizerRule("sgd", SGD, ("momentum", "nesterov"), False, _sgd_step, "SGD"),
    OptimizerRule("adam", ADAM, ("beta1", "beta2", "eps"), True, _adam_step, "Adam"),
    OptimizerRule("rmsprop", RMSPROP, ("beta2", "eps"), True, _rmsprop_step, "RMSprop"),
    OptimizerRule("adagrad", ADAGRAD, ("eps",), True, _adagrad_step, "Adagrad"),
    OptimizerRule("adamw", ADAMW, ("beta1", "beta2", "eps", "weight_decay"), True, _adamw_step,
                  "AdamW"),
)}
OPTIMIZER_BY_KIND = {o.kind: o for o in OPTIMIZERS.values()}


def step_size(opt, t):
    """The step size of update ``t`` (1-based): Adam's and AdamW's
    bias-corrected rate, else ``lr`` (as ``kernels.train.step_settings``)."""
    if opt.kind in (ADAM, ADAMW):
        return opt.lr * np.sqrt(1.0 - opt.beta2 ** t) / (1.0 - opt.beta1 ** t)
    return opt.lr
