"""``Network.summary()`` and the notebook display of a network: one table
of its layers, as text or HTML."""
import html


def _rows(net):
    rows = []
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        act = net.hidden_acts[l] if l < len(net.weights) - 1 else f"{net.output} (head)"
        rows.append((f"dense {l}", f"{W.shape[0]} -> {W.shape[1]}", f"{W.size + b.size:,}",
                     act))
    return rows


def _footer(net):
    path = "sparse (CSR)" if net.engine.input_cache is not None else "dense"
    return (f"{net.theta.size:,} parameters, {net.dtype.name} "
            f"({net.theta.nbytes / 2**20:.2f} MiB); first layer of the last fit: {path}")


def _state(net):
    hist = getattr(net, "history", None)
    if not hist or not hist.get("loss"):
        return "not trained"
    text = f"trained: {len(hist['loss'])} epochs, last loss {hist['loss'][-1]:.4g}"
    if hist.get("val_loss"):
        text += f", validation loss {hist['val_loss'][-1]:.4g}"
    return text


def network_summary(net):
    """A table of the layers: shapes, parameter counts, activation, dtype,
    the first layer's kernel path of the last fit (dense/sparse) and the
    fitted state."""
    rows = [("layer", "shape", "params", "activation")] + _rows(net)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(f"{c:<{w}}" for c, w in zip(r, widths)).rstrip() for r in rows]
    lines += [_footer(net), _state(net)]
    return "\n".join(lines)


def network_html(net):
    """The same table as HTML, for notebooks (``Network._repr_html_``)."""
    e = html.escape
    head = "".join(f"<th style='text-align:left'>{c}</th>"
                   for c in ("layer", "shape", "params", "activation"))
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{e(c)}</td>" for c in r)
                   + "</tr>" for r in _rows(net))
    return (f"<div class='fastnn-network'><p><b>{e(repr(net))}</b></p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p>{e(_footer(net))}<br>{e(_state(net))}</p></div>")
