"""ONNX export: a fastnn network as an ``onnx.ModelProto``.

The graph is what the kernels compute: per layer ``Gemm(x, W, b)`` (W is
stored (fan_in, fan_out), as ONNX's Gemm takes B without transposing), then
each hidden layer's activation and, last, the head's (``Softmax`` over axis
1, ``Sigmoid``, ``Exp``, or nothing for squared error), as
:mod:`fastnn.engine.registry` declares them: one node, or a few (an
activation that onnxruntime implements only in float32, such as ``Elu``,
is written with the elementwise ops it implements in float64 too). A
node's constant inputs (a slope, say) are initializers of the model's
element type, so a float64 model computes with float64 constants (ONNX's
float attributes are 32-bit).
Input ``input`` and output ``output`` have a dynamic batch dimension
``batch``; the element type is the model's (float32 or float64); opset 17.
Needs the optional ``onnx`` package (``pip install "fastnn[onnx]"``).
"""
import numpy as np

from ..engine.registry import ACTIVATIONS, HEADS

OPSET = 17


def to_onnx(net, path=None, name="fastnn"):
    """The network as an ONNX model; also written to ``path`` if given."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as e:
        raise ImportError("ONNX export needs the onnx package: pip install 'fastnn[onnx]'") from e
    elem = TensorProto.FLOAT if net.dtype == np.float32 else TensorProto.DOUBLE
    nodes, inits = [], []
    current = "input"
    n_layers = len(net.weights)
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        inits += [numpy_helper.from_array(np.ascontiguousarray(W), f"W{l}"),
                  numpy_helper.from_array(np.ascontiguousarray(b), f"b{l}")]
        out = f"u{l}"
        nodes.append(helper.make_node("Gemm", [current, f"W{l}", f"b{l}"], [out],
                                      name=f"dense{l}"))
        current = out
        spec = (ACTIVATIONS[net.hidden_acts[l]].onnx if l < n_layers - 1
                else HEADS[net.output].onnx)
        if spec is not None:
            current = _activation_nodes(spec, current, l, nodes, inits, net.dtype, helper,
                                        numpy_helper)
    nodes.append(helper.make_node("Identity", [current], ["output"], name="output"))
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", elem, ["batch", net.n_inputs])],
        [helper.make_tensor_value_info("output", elem, ["batch", net.n_outputs])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="fastnn",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 9)  # readable by current onnxruntime
    onnx.checker.check_model(model)
    if path is not None:
        from ..engine.modelio import atomic_write
        data = model.SerializeToString()
        atomic_write(path, lambda f: f.write(data))
    return model


def _activation_nodes(spec, x, l, nodes, inits, dtype, helper, numpy_helper):
    """Append layer ``l``'s activation ``spec`` applied to the tensor ``x``
    (see ``registry.Activation.onnx``); returns its output's name."""
    if isinstance(spec, tuple):  # one node: (op, attributes, constant inputs)
        op, attributes, constants = spec
        spec = [(op, attributes, ("x",) + tuple(constants))]
    names = []
    for k, (op, attributes, refs) in enumerate(spec):
        inputs = []
        for j, ref in enumerate(refs):
            if isinstance(ref, str):        # "x": the layer's input
                inputs.append(x)
            elif isinstance(ref, int):      # an earlier step's output
                inputs.append(names[ref])
            else:                           # a constant, in the model's dtype
                name = f"{op.lower()}{l}_{k}_c{j}"
                inits.append(numpy_helper.from_array(np.array([ref], dtype), name))
                inputs.append(name)
        out = f"h{l}" if k == len(spec) - 1 else f"h{l}_{k}"
        nodes.append(helper.make_node(op, inputs, [out], name=f"{op.lower()}{l}_{k}",
                                      **attributes))
        names.append(out)
    return names[-1]
