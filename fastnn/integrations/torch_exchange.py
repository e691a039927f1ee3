"""Hand a Network to PyTorch and back (torch stays optional).

``to_torch``: a ``torch.nn.Sequential`` of ``Linear`` layers and each hidden
layer's activation, ending with the output head's non-linearity (``Softmax(dim=1)``,
``Sigmoid``, an exp for Poisson, nothing for identity), so calling it on a
batch gives ``predict_proba``. ``from_torch``: the reverse, for stacks of
``Linear`` layers with one activation (or none: identity) between two of
them (what a Network holds) and an optional final ``Softmax``/``Sigmoid`` that names the output
head (none: identity). The modules of each operation are those
:mod:`fastnn.engine.registry` declares.
"""
import numpy as np

from ..engine.registry import ACTIVATIONS, HEADS

_HIDDEN = {a.torch[0]: a for a in ACTIVATIONS.values()}  # torch.nn class name -> activation


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("PyTorch is needed for this: pip install torch") from None
    return torch


def _exp_module(torch):
    class Exp(torch.nn.Module):
        """exp(): the Poisson head's mean rate."""

        def forward(self, x):
            return torch.exp(x)

    return Exp()


def to_torch(net):
    torch = _torch()
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
        np.dtype(net.dtype)]
    modules = []
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        lin = torch.nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        modules.append(lin)
        if i < len(net.weights) - 1:
            act_class, act_kwargs = ACTIVATIONS[net.hidden_acts[i]].torch
            modules.append(getattr(torch.nn, act_class)(**act_kwargs))
    head = HEADS[net.output].torch
    if head == "Softmax":
        modules.append(torch.nn.Softmax(dim=1))
    elif head == "Exp":
        modules.append(_exp_module(torch))
    elif head is not None:
        modules.append(getattr(torch.nn, head)())
    return torch.nn.Sequential(*modules)


def from_torch(cls, seq, seed=None):
    torch = _torch()
    if not isinstance(seq, torch.nn.Sequential):
        raise TypeError(f"expected a torch.nn.Sequential, got {type(seq).__name__}")
    mods = list(seq)
    output = "identity"
    if mods and type(mods[-1]).__name__ in ("Softmax", "Sigmoid") and \
            not any(isinstance(m, torch.nn.Linear) for m in mods[mods.index(mods[-1]):]):
        last = mods.pop()
        if isinstance(last, torch.nn.Softmax) and last.dim not in (1, -1):
            raise ValueError(f"the final Softmax must be over dim 1, got dim={last.dim}")
        output = "softmax" if isinstance(last, torch.nn.Softmax) else "sigmoid"
    linears, hidden = [], []  # hidden[k]: the activation after linear k, if any
    for i, m in enumerate(mods):
        if isinstance(m, torch.nn.Linear):
            if m.bias is None:
                raise ValueError(f"layer {i} (Linear) has no bias: fastnn layers always have one")
            linears.append(m)
        elif type(m).__name__ in _HIDDEN:
            if not linears or i == len(mods) - 1:
                raise ValueError(f"layer {i} ({type(m).__name__}) must sit between Linear layers")
            if len(hidden) == len(linears):
                raise ValueError(f"layer {i} ({type(m).__name__}) follows another activation: "
                                 f"a Network has one between two Linear layers")
            hidden += [None] * (len(linears) - 1 - len(hidden)) + [_hidden_name(m, i)]
        else:
            raise ValueError(f"layer {i} ({type(m).__name__}) is not supported: use Linear, "
                             f"{', '.join(_HIDDEN)} and a final Softmax/Sigmoid")
    if not linears:
        raise ValueError("the Sequential holds no Linear layer")
    layers = [linears[0].in_features]
    for a, b in zip(linears, linears[1:]):
        if b.in_features != a.out_features:
            raise ValueError(f"Linear {a.in_features}->{a.out_features} is followed by "
                             f"{b.in_features}->{b.out_features}")
    layers += [m.out_features for m in linears]
    dtype = linears[0].weight.dtype
    np_dtype = {torch.float32: "float32", torch.float64: "float64"}.get(dtype)
    if np_dtype is None:
        raise ValueError(f"weights must be float32 or float64, got {dtype}")
    # Two Linear layers in a row: identity between them.
    acts = [a or "identity" for a in hidden + [None] * (len(linears) - 1 - len(hidden))]
    net = cls(layers, hidden=acts[0] if len(set(acts)) == 1 else acts, output=output,
              dtype=np_dtype, seed=seed)
    for l, m in enumerate(linears):
        net.weights[l][...] = m.weight.detach().cpu().numpy().T
        net.biases[l][...] = m.bias.detach().cpu().numpy()
    return net


def _hidden_name(module, i):
    """The activation a torch module is, checking its settings (a LeakyReLU
    of another slope is not fastnn's)."""
    spec = _HIDDEN[type(module).__name__]
    for key, value in spec.torch[1].items():
        if getattr(module, key, value) != value:
            raise ValueError(f"layer {i} ({type(module).__name__}) has {key}="
                             f"{getattr(module, key)}; fastnn's {spec.name} has {key}={value}")
    return spec.name
