"""Sizes and allocation, apart from the math (as llm.c's parameter and
activation structs): the flat parameter vector's layout and the work buffers
one ``fit`` or ``predict`` uses. Nothing here computes."""
import numpy as np

from ..kernels.bundles import Model, Work
from ..kernels.layout import (NT_PACK_MIN_N, PACK_MIN_N, SLACK, packed_size, padded_width,
                              tn_packed_size, tn_packs)

# Rows per forward chunk in predict/evaluate: buffers stay small (a few MB)
# however many rows are predicted.
EVAL_ROWS = 2048


def aligned_zeros(n, dtype, align=64):
    """A zeroed 1-D array of n elements whose data starts on an ``align``-byte
    boundary (NumPy guarantees less)."""
    dtype = np.dtype(dtype)
    raw = np.zeros(n + align // dtype.itemsize, dtype)
    start = (-raw.ctypes.data % align) // dtype.itemsize
    return raw[start:start + n]


class ParamLayout:
    """Where each layer lives in the flat parameter vector ``theta``.

    ``sizes`` (L+1,) layer widths; ``poff`` (L+1,) offset of W_l (b_l
    follows it), ``poff[L]`` = number of parameters; ``hoff`` (L+1,) offset
    of layer l's outputs in a row of the work buffers."""

    def __init__(self, layers):
        self.sizes = np.array(layers, dtype=np.int64)
        n_layers = len(layers) - 1
        self.poff = np.zeros(n_layers + 1, dtype=np.int64)
        self.hoff = np.zeros(n_layers + 1, dtype=np.int64)
        for l in range(n_layers):
            self.poff[l + 1] = self.poff[l] + layers[l] * layers[l + 1] + layers[l + 1]
            self.hoff[l + 1] = self.hoff[l] + layers[l + 1]
        self.n_params = int(self.poff[-1])

    def new_theta(self, dtype):
        # Aligned, with slack after the end: the sparse first layer reads
        # W in place when its rows are 64-byte aligned, and its last column
        # group reads up to SLACK elements past the last row.
        return aligned_zeros(self.n_params + SLACK, dtype)[:self.n_params]

    def views(self, theta):
        """(weights, biases): lists of (fan_in, fan_out) and (fan_out,) views."""
        weights, biases = [], []
        for l in range(len(self.sizes) - 1):
            k, n, o = int(self.sizes[l]), int(self.sizes[l + 1]), int(self.poff[l])
            weights.append(theta[o:o + k * n].reshape(k, n))
            biases.append(theta[o + k * n:o + k * n + n])
        return weights, biases

    def model(self, theta, acts):
        return Model(theta, self.sizes, self.poff, acts)


def pack_scratch_size(layers, cap, dtype):
    """Scratch the wide matmuls need to pack their operands: weights
    (forward, from PACK_MIN_N columns), transposed weights (backward dX,
    from NT_PACK_MIN_N columns) and dU with the inputs (weight gradients,
    where :func:`.kernels.layout.tn_packs` says so)."""
    need = [0]
    for l in range(len(layers) - 1):
        if layers[l + 1] >= PACK_MIN_N:
            need.append(packed_size(layers[l], layers[l + 1]))
        if tn_packs(cap, layers[l], layers[l + 1], np.dtype(dtype).itemsize):
            need.append(tn_packed_size(cap, layers[l], layers[l + 1]))
        if l > 0 and layers[l] >= NT_PACK_MIN_N:
            need.append(packed_size(layers[l + 1], layers[l]))
    return max(need)


def work_buffers(layout, cap, dtype, sparse=False, split=False, keep_input=False,
                 masks=False):
    """:class:`Work` for batches of up to ``cap`` rows; ``sparse`` adds the
    aligned scratch of the sparse first layer's W and dU copies, ``split``
    a second gradient and transpose scratch for row-split batches
    (:func:`.kernels.layout.row_split`), ``keep_input`` the pre-activation
    buffer of training with GELU or SiLU layers, ``masks`` the dropout
    masks' buffer (stochastic training)."""
    layers = [int(s) for s in layout.sizes]
    width = int(layout.hoff[-1])
    wt_size = max([layers[l] * layers[l + 1] for l in range(1, len(layers) - 1)] + [0])
    gs = aligned_zeros(layout.n_params if split else 0, dtype)
    if split:
        wt_size *= 2  # one transposed W per half
    wa = da = np.zeros(0, dtype)
    if sparse:
        npad = padded_width(layers[1])
        wa = aligned_zeros(layers[0] * npad + SLACK, dtype)
        # (split: then the two threads' partial first-layer products)
        da = aligned_zeros((3 if split else 1) * cap * npad + SLACK, dtype)
    return Work(hbuf=np.empty(cap * width, dtype),
                dbuf=aligned_zeros(cap * width + SLACK, dtype)[:cap * width],
                hoff=layout.hoff, cap=cap, wt=np.empty(wt_size, dtype), wa=wa, da=da,
                bp=np.empty(pack_scratch_size(layers, cap, dtype), dtype), gs=gs,
                ubuf=np.empty(cap * width if keep_input else 0, dtype),
                mbuf=np.empty(cap * width if masks else 0, np.uint8))
