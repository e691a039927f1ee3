"""Activation functions as scalar kernels, selected by an integer code.

Compiled kernels cannot take Python callables cheaply, so every layer carries
an ``act`` code and the fused matmul epilogues call :func:`act_forward` /
:func:`act_grad` on each output element. Both are tiny and LLVM inlines them.

The derivative is written in terms of the activation's *output* ``y``
(relu: ``y > 0``; sigmoid: ``y(1-y)``; tanh: ``1-y^2``), so a layer's forward
only has to keep its output for the backward pass.
"""
import math

import numpy as np

from .._config import jit

# NumPy integers, not Python ints: Numba types a Python int constant passed
# to a kernel as a literal and compiles a separate specialisation for it
# (gemm_nn_fused_into(..., act=IDENTITY) apart from (..., act=<int64>)),
# which cost ~15 s of a ~55 s cold start; a branch on a run-time code
# outside the inner loops costs nothing measurable.
IDENTITY = np.int64(0)
RELU = np.int64(1)
SIGMOID = np.int64(2)
TANH = np.int64(3)

CODES = {"identity": IDENTITY, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH}


@jit
def sigmoid(x):
    # Two branches so exp() only ever sees a non-positive argument: no
    # overflow to inf and no 1/(1+inf) cancellation for large |x|.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@jit
def act_forward(x, act):
    if act == RELU:
        return x if x > 0 else x * 0
    if act == SIGMOID:
        return sigmoid(x)
    if act == TANH:
        return math.tanh(x)
    return x


@jit
def act_grad(y, act):
    """d act / d x, expressed through the output ``y = act(x)``."""
    if act == RELU:
        return y * 0 + 1 if y > 0 else y * 0
    if act == SIGMOID:
        return y * (1 - y)
    if act == TANH:
        return 1 - y * y
    return y * 0 + 1
