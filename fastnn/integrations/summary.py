"""``Network.summary()``: a plain-text table of a network."""


def network_summary(net):
    """A table of the layers: shapes, parameter counts, activation, dtype,
    and the first layer's kernel path of the last fit (dense/sparse)."""
    rows = [("layer", "shape", "params", "activation")]
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        act = net.hidden_acts[l] if l < len(net.weights) - 1 else f"{net.output} (head)"
        rows.append((f"dense {l}", f"{W.shape[0]} -> {W.shape[1]}", f"{W.size + b.size:,}",
                     act))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(f"{c:<{w}}" for c, w in zip(r, widths)) for r in rows]
    path = "sparse (CSR)" if net.engine.input_cache is not None else "dense"
    lines.append(f"{net.theta.size:,} parameters, {net.dtype.name} "
                 f"({net.theta.nbytes / 2**20:.2f} MiB); first layer of the last fit: "
                 f"{path}")
    return "\n".join(lines)
