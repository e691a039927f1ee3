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


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as e:
        raise ImportError("ONNX export needs the onnx package: pip install 'fastnn[onnx]'") from e
    return onnx, helper, numpy_helper


def network_nodes(net, x, name=lambda base: base):
    """The nodes and initializers computing ``net``'s output head from the
    tensor named ``x``: (nodes, initializers, output name). ``name(base)``
    makes each node, initializer and tensor name (unique within a larger
    graph, e.g. skl2onnx's)."""
    _, helper, numpy_helper = _onnx()
    nodes, inits = [], []
    current = x
    n_layers = len(net.weights)
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        w_name, b_name = name(f"W{l}"), name(f"b{l}")
        inits += [numpy_helper.from_array(np.ascontiguousarray(W), w_name),
                  numpy_helper.from_array(np.ascontiguousarray(b), b_name)]
        out = name(f"u{l}")
        nodes.append(helper.make_node("Gemm", [current, w_name, b_name], [out],
                                      name=name(f"dense{l}")))
        current = out
        spec = (ACTIVATIONS[net.hidden_acts[l]].onnx if l < n_layers - 1
                else HEADS[net.output].onnx)
        if spec is not None:
            current = _activation_nodes(spec, current, l, nodes, inits, net.dtype, helper,
                                        numpy_helper, name)
    return nodes, inits, current


def _model(nodes, inits, inputs, outputs, path, name):
    onnx, helper, _ = _onnx()
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, producer_name="fastnn",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 9)  # readable by current onnxruntime
    onnx.checker.check_model(model)
    if path is not None:
        from ..engine.modelio import atomic_write
        data = model.SerializeToString()
        atomic_write(path, lambda f: f.write(data))
    return model


def _elem(dtype):
    from onnx import TensorProto
    return TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE


def to_onnx(net, path=None, name="fastnn"):
    """The network as an ONNX model; also written to ``path`` if given."""
    _, helper, _ = _onnx()
    nodes, inits, out = network_nodes(net, "input")
    nodes.append(helper.make_node("Identity", [out], ["output"], name="output"))
    elem = _elem(net.dtype)
    return _model(nodes, inits,
                  [helper.make_tensor_value_info("input", elem, ["batch", net.n_inputs])],
                  [helper.make_tensor_value_info("output", elem, ["batch", net.n_outputs])],
                  path, name)


def estimator_nodes(est, x, label, probabilities, name=lambda base: base):
    """Nodes computing a fitted fastnn estimator's outputs from the tensor
    ``x``, as skl2onnx's converters name them: a classifier's ``label``
    (``predict``: classes_ values, int64 or string; 0/1 columns for
    multi-label) and ``probabilities`` (``predict_proba``, one column per
    class); a regressor's values (``label`` is then None and
    ``probabilities`` gets ``predict``'s values, 2-D). Returns (nodes,
    initializers)."""
    _, helper, numpy_helper = _onnx()
    net = est.network_
    nodes, inits, out = network_nodes(net, x, name)
    if label is None:  # a regressor: the head's values
        nodes.append(helper.make_node("Identity", [out], [probabilities], name=name("values")))
        return nodes, inits
    binarizer = est._label_binarizer
    if binarizer.y_type_ == "multilabel-indicator":
        nodes.append(helper.make_node("Identity", [out], [probabilities], name=name("proba")))
        half = name("half")
        inits.append(numpy_helper.from_array(np.array([0.5], net.dtype), half))
        above = name("above")
        nodes += [helper.make_node("Greater", [out, half], [above], name=name("greater")),
                  helper.make_node("Cast", [above], [label], to=7, name=name("to_int64"))]
        return nodes, inits
    if net.n_outputs == 1:  # two classes, one logistic output: [1 - p, p]
        one, rest = name("one"), name("one_minus_p")
        inits.append(numpy_helper.from_array(np.array([1.0], net.dtype), one))
        nodes += [helper.make_node("Sub", [one, out], [rest], name=name("sub")),
                  helper.make_node("Concat", [rest, out], [probabilities], axis=1,
                                   name=name("concat"))]
    else:
        nodes.append(helper.make_node("Identity", [out], [probabilities], name=name("proba")))
    # predict: the first class of largest probability (LabelBinarizer's
    # argmax; with two classes, class 1 when p > 0.5)
    index, classes = name("index"), name("classes")
    values = np.asarray(est.classes_)
    if values.dtype.kind in "iub":
        inits.append(numpy_helper.from_array(values.astype(np.int64), classes))
    else:
        inits.append(helper.make_tensor(classes, 8, [len(values)],
                                        [str(v).encode() for v in values]))
    nodes += [helper.make_node("ArgMax", [probabilities], [index], axis=1, keepdims=0,
                               name=name("argmax")),
              helper.make_node("Gather", [classes, index], [label], axis=0, name=name("label"))]
    return nodes, inits


def estimator_to_onnx(est, path=None, name="fastnn"):
    """A fitted fastnn estimator as ONNX, outputs named as skl2onnx names
    them (see :func:`estimator_nodes`): ``label`` and ``probabilities`` for
    a classifier, ``variable`` for a regressor."""
    _, helper, _ = _onnx()
    net = est.network_
    elem = _elem(net.dtype)
    inputs = [helper.make_tensor_value_info("input", elem, ["batch", net.n_inputs])]
    if not hasattr(est, "classes_"):
        nodes, inits = estimator_nodes(est, "input", None, "variable")
        return _model(nodes, inits, inputs, [helper.make_tensor_value_info(
            "variable", elem, ["batch", net.n_outputs])], path, name)
    nodes, inits = estimator_nodes(est, "input", "label", "probabilities")
    k = len(est.classes_)
    multilabel = est._label_binarizer.y_type_ == "multilabel-indicator"
    label_type = 7 if multilabel or np.asarray(est.classes_).dtype.kind in "iub" else 8
    outputs = [helper.make_tensor_value_info("label", label_type,
                                             ["batch", k] if multilabel else ["batch"]),
               helper.make_tensor_value_info("probabilities", elem, ["batch", k])]
    return _model(nodes, inits, inputs, outputs, path, name)


def _activation_nodes(spec, x, l, nodes, inits, dtype, helper, numpy_helper,
                      name=lambda base: base):
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
                const = name(f"{op.lower()}{l}_{k}_c{j}")
                inits.append(numpy_helper.from_array(np.array([ref], dtype), const))
                inputs.append(const)
        out = name(f"h{l}" if k == len(spec) - 1 else f"h{l}_{k}")
        nodes.append(helper.make_node(op, inputs, [out], name=name(f"{op.lower()}{l}_{k}"),
                                      **attributes))
        names.append(out)
    return names[-1]


def register_skl2onnx():
    """Teach skl2onnx fastnn's ``MLPClassifier`` and ``MLPRegressor`` (a
    converter and a shape calculator each), so ``skl2onnx.to_onnx`` converts
    pipelines that hold them; their outputs are skl2onnx's (``label``,
    ``probabilities``, or ZipMap's ``output_probability``; ``variable``).
    Done when the estimators are imported after skl2onnx, and by each
    estimator's ``to_onnx``; call it if skl2onnx is imported later."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (calculate_linear_classifier_output_shapes,
                                                  calculate_linear_regressor_output_shapes)

    from .estimators import MLPClassifier, MLPRegressor
    update_registered_converter(MLPClassifier, "FastnnMLPClassifier",
                                calculate_linear_classifier_output_shapes, _skl2onnx_convert,
                                options={"zipmap": [True, False, "columns"],
                                         "nocl": [True, False]})
    update_registered_converter(MLPRegressor, "FastnnMLPRegressor",
                                calculate_linear_regressor_output_shapes, _skl2onnx_convert)


def _skl2onnx_convert(scope, operator, container):
    """skl2onnx converter: :func:`estimator_nodes` between a Cast of the
    input to the network's dtype and Casts of the outputs to the types the
    shape calculator chose."""
    from onnx import helper
    from skl2onnx.common.data_types import DoubleTensorType

    est = operator.raw_operator
    net = est.network_

    def name(base):
        return scope.get_unique_variable_name(f"fastnn_{base}")

    x = name("input")
    container.add_node("Cast", [operator.inputs[0].full_name], [x], to=_elem(net.dtype),
                       name=name("cast_input"))
    classify = hasattr(est, "classes_")
    values = name("values")
    label = operator.outputs[0].full_name if classify else None
    nodes, inits = estimator_nodes(est, x, label, values, name)
    for init in inits:
        container.initializers.append(init)
    for node in nodes:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        container.add_node(node.op_type, list(node.input), list(node.output), name=node.name,
                           op_version=OPSET, **attributes)
    target = operator.outputs[1 if classify else 0]
    wanted = np.float64 if isinstance(target.type, DoubleTensorType) else np.float32
    container.add_node("Cast", [values], [target.full_name], to=_elem(wanted),
                       name=name("cast_output"))


def register_skl2onnx_when_imported():
    """:func:`register_skl2onnx` now if skl2onnx is imported, else right
    after it is (importing it here would cost every estimator user ~1.3 s
    for an optional export)."""
    import importlib.abc
    import importlib.util
    import sys

    if "skl2onnx" in sys.modules:
        register_skl2onnx()
        return

    class AfterImport(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname != "skl2onnx":
                return None
            sys.meta_path.remove(self)  # once; and find the real spec below
            spec = importlib.util.find_spec(fullname)
            if spec is None or spec.loader is None:
                return spec
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                register_skl2onnx()
            spec.loader.exec_module = exec_module
            return spec

    if importlib.util.find_spec("skl2onnx") is not None and not any(
            type(f).__name__ == "AfterImport" for f in sys.meta_path):
        sys.meta_path.insert(0, AfterImport())
