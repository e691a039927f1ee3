"""ONNX export: a fastnn network as an ``onnx.ModelProto``.

The graph is what the kernels compute: per layer ``Gemm(x, W, b)`` (W is
stored (fan_in, fan_out), as ONNX's Gemm takes B without transposing), then
the hidden activation's node and, last, the head's (``Softmax`` over axis 1,
``Sigmoid``, ``Exp``, or nothing for squared error), as
:mod:`fastnn.engine.registry` declares them. A node's constant inputs (a
slope, say) are initializers of the model's element type, so a float64
model computes with float64 constants (ONNX's float attributes are 32-bit).
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
        node = ACTIVATIONS[net.hidden].onnx if l < n_layers - 1 else HEADS[net.output].onnx
        if node is not None:
            op, attributes, constants = node
            extra = [f"{op.lower()}{l}_c{k}" for k in range(len(constants))]
            inits += [numpy_helper.from_array(np.array([c], net.dtype), name)
                      for c, name in zip(constants, extra)]
            nodes.append(helper.make_node(op, [current] + extra, [f"h{l}"],
                                          name=f"{op.lower()}{l}", **attributes))
            current = f"h{l}"
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
