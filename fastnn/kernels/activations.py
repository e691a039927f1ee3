"""Activation functions as scalar kernels, selected by an integer code.

Compiled kernels cannot take Python callables cheaply, so every layer carries
an ``act`` code and the fused matmul epilogues call :func:`act_forward` /
:func:`act_grad` on each output element. Both are tiny and LLVM inlines them.

The derivative is written in terms of the activation's *output* ``y``
(relu: ``y > 0``; sigmoid: ``y(1-y)``; tanh: ``1-y^2``; leaky relu:
1 or its slope by the sign of ``y``; elu: 1 or ``y+1``; softplus:
``1-exp(-y)``, the sigmoid of the input), so a layer's forward
only has to keep its output for the backward pass. GELU and SiLU are not
monotonic, so their output does not determine their input: a layer with
one of them keeps its pre-activation ``x`` too (``Work.ubuf``), and
:func:`act_grad_input` takes the derivative from ``x``.
"""
import math

import numpy as np
from numba import types
from numba.extending import overload

from .._config import CACHE, jit, jit_inline
from .intrinsics import bits_to_float

# NumPy integers, not Python ints: Numba types a Python int constant passed
# to a kernel as a literal and compiles a separate specialisation for it
# (gemm_nn_fused_into(..., act=IDENTITY) apart from (..., act=<int64>)),
# a quarter of a cold start; a branch on a run-time code
# outside the inner loops costs nothing measurable.
IDENTITY = np.int64(0)
RELU = np.int64(1)
SIGMOID = np.int64(2)
TANH = np.int64(3)
LEAKY_RELU = np.int64(4)
LEAKY_SLOPE = 0.01  # x * slope for x <= 0: torch.nn.LeakyReLU's default negative_slope
_LEAKY_SLOPE32 = np.float32(LEAKY_SLOPE)

ELU = np.int64(5)       # alpha = 1, torch.nn.ELU's default
SOFTPLUS = np.int64(6)  # beta = 1, computed exactly (torch.nn.Softplus returns x above 20)

# The exact GELU, x * Phi(x) (torch.nn.GELU's default, approximate="none"),
# and SiLU, x * sigmoid(x) (torch.nn.SiLU). Codes from GELU on take their
# derivative from the input (uses_input).
GELU = np.int64(7)
SILU = np.int64(8)
_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327

CODES = {"identity": IDENTITY, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH,
         "leaky_relu": LEAKY_RELU, "elu": ELU, "softplus": SOFTPLUS, "gelu": GELU,
         "silu": SILU}


# --- exp of a non-positive argument, inline and vectorisable ---------------
# Softmax needs exp(z - max z) <= 1 for every output. math.exp is a call to
# libm per element (~20 cycles, most of the head's time in a 10000-row MNIST
# predict_proba), which also keeps LLVM from vectorising the loop. Used by the
# prediction head only: training keeps math.exp (see losses.py). This is
# the classic Cody-Waite reduction x = n*ln2 + r,
# |r| <= ln2/2, then a polynomial for exp(r) and 2**n from its bits:
# a few FMAs inline. Accuracy (tests/test_kernels.py, against np.exp in
# float64): float32 <= 2 ulp (Cephes expf's minimax polynomial), float64
# <= 2 ulp (Taylor to r**13: truncation < 1e-17). Arguments below the
# smallest normal result (float32 -87.3, float64 -708.3) give exactly 0;
# NaN gives NaN.
_LOG2E = 1.4426950408889634
_LN2_HI32, _LN2_LO32 = np.float32(0.693359375), np.float32(-2.12194440e-4)
_LN2_HI64, _LN2_LO64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_LO32 = np.float32(-87.33654)
_LO64 = -708.3964185322641
_P32 = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                     4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
_INV_FACT = tuple(1.0 / math.factorial(k) for k in range(13, 1, -1))  # 1/13! .. 1/2!


@jit_inline
def _exp_nonpositive32(x):
    xc = max(x, _LO32)
    n = np.floor(xc * np.float32(_LOG2E) + np.float32(0.5))
    r = xc - n * _LN2_HI32 - n * _LN2_LO32
    p = _P32[0]
    p = p * r + _P32[1]
    p = p * r + _P32[2]
    p = p * r + _P32[3]
    p = p * r + _P32[4]
    p = p * r + _P32[5]
    e = p * (r * r) + r + np.float32(1)
    # (Numba widens int32 arithmetic to int64: narrow the bits again.)
    scale = bits_to_float(np.int32((np.int64(n) + 127) << 23))
    return e * scale if x >= _LO32 else (np.float32(0) if x < _LO32 else x)  # NaN stays NaN


@jit_inline
def _exp_nonpositive64(x):
    xc = max(x, _LO64)
    n = np.floor(xc * _LOG2E + 0.5)
    r = xc - n * _LN2_HI64 - n * _LN2_LO64
    p = _INV_FACT[0]
    for c in _INV_FACT[1:]:
        p = p * r + c
    e = p * (r * r) + r + 1.0
    scale = bits_to_float((np.int64(n) + 1023) << 52)
    return e * scale if x >= _LO64 else (0.0 if x < _LO64 else x)


def exp_nonpositive(x):
    """exp(x) for x <= 0, in x's precision, inline (see above)."""
    raise NotImplementedError  # only callable from compiled code


@overload(exp_nonpositive, inline="always", jit_options=dict(cache=CACHE))
def _exp_nonpositive_typed(x):
    if x == types.float32:
        return lambda x: _exp_nonpositive32(x)
    return lambda x: _exp_nonpositive64(x)


def leaky_slope(x):
    """The leaky relu's slope in x's precision (a float64 constant would
    make float32 arithmetic float64)."""
    raise NotImplementedError  # only callable from compiled code


@overload(leaky_slope, inline="always", jit_options=dict(cache=CACHE))
def _leaky_slope_typed(x):
    if x == types.float32:
        return lambda x: _LEAKY_SLOPE32
    return lambda x: LEAKY_SLOPE


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
    if act == LEAKY_RELU:
        return x if x > 0 else x * leaky_slope(x)
    if act == ELU:
        return x if x > 0 else math.expm1(x)
    if act == SOFTPLUS:
        # log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|).
        return max(x, x * 0) + math.log1p(math.exp(-abs(x)))
    if act == GELU:
        return x * (0.5 + 0.5 * math.erf(x * _SQRT_HALF))
    if act == SILU:
        return x * sigmoid(x)
    return x


@jit
def uses_input(act):
    """Whether ``act``'s derivative needs its input (GELU, SiLU)."""
    return act >= GELU


@jit
def act_grad(y, act):
    """d act / d x, expressed through the output ``y = act(x)``."""
    if act == RELU:
        return y * 0 + 1 if y > 0 else y * 0
    if act == SIGMOID:
        return y * (1 - y)
    if act == TANH:
        return 1 - y * y
    if act == LEAKY_RELU:
        return y * 0 + 1 if y > 0 else y * 0 + leaky_slope(y)
    if act == ELU:
        return y * 0 + 1 if y > 0 else y + 1
    if act == SOFTPLUS:
        return -math.expm1(-y)
    return y * 0 + 1


@jit
def act_grad_input(x, act):
    """d act / d x from the input ``x`` (GELU, SiLU; else 1)."""
    if act == GELU:
        return 0.5 + 0.5 * math.erf(x * _SQRT_HALF) + x * _INV_SQRT_2PI * math.exp(-0.5 * x * x)
    if act == SILU:
        s = sigmoid(x)
        return s * (1 + x * (1 - s))
    return x * 0 + 1
