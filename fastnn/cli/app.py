"""The ``fastnn`` command line: train, evaluate, predict, bench.

    python -m fastnn train --epochs 10 --save model.npz --plot curves.png
    python -m fastnn evaluate model.npz
    python -m fastnn predict model.npz --input x.npy --output labels.npy
    python -m fastnn bench --workload classic

Errors (bad data, a missing file, a bad option value) end with one line on
stderr and exit status 1; usage errors exit with status 2 (argparse).
"""
import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any, NamedTuple

import numpy as np

from .. import __version__, datasets
from ..engine import modelio, schedules
from ..engine.init import INITS
from ..engine.network import Network, TrainingDivergedError
from ..engine.validation import HIDDEN, OPTIMIZERS, OUTPUTS, REGRESSION_OUTPUTS
from ..integrations import plots
from ..runtime import interrupts


class CLIError(Exception):
    """An error reported as one line, exit status 1."""


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _activations(text):
    """One activation name, or a comma-separated name per hidden layer."""
    names = [n.strip() for n in text.split(",")]
    for n in names:
        if n not in HIDDEN:
            raise argparse.ArgumentTypeError(f"unknown activation {n!r} (choose from "
                                              f"{', '.join(HIDDEN)})")
    return names[0] if len(names) == 1 else names


def _rates(text):
    try:
        rates = [float(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected rates like 0.2 or 0.2,0.1, got {text!r}"
                                         ) from None
    return rates[0] if len(rates) == 1 else rates


def _layers(text):
    try:
        sizes = [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected hidden layer sizes like 100,50, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


def _data_help():
    return ("a directory with the four MNIST IDX files, an .npz file (x_train, y_train "
            "[, x_test, y_test]) or a .csv file (label in the last column); default: the "
            "MNIST copy bundled with fastnn")


def _csv_header_option(parser):
    parser.add_argument("--csv-header", choices=("auto", "yes", "no"), default="auto",
                        help="whether a .csv file's first row is a header (auto: only when "
                             "no cell of it is a number or empty)")


def _header(args):
    return {"auto": None, "yes": True, "no": False}[args.csv_header]


def build_parser():
    p = argparse.ArgumentParser(
        prog="fastnn", description="Train and use multi-layer perceptrons on the CPU.")
    p.add_argument("--version", action="version", version=f"fastnn {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _train_parser(sub)
    _use_parsers(sub)
    return p


def _train_parser(sub):
    t = sub.add_parser("train", help="train a network and print a per-epoch table",
                       description="Train a network (MNIST by default) and print one line "
                                   "per epoch.")
    t.add_argument("--data", help=_data_help())
    _csv_header_option(t)
    t.add_argument("--layers", type=_layers, default=[100, 50], metavar="N,N,...",
                   help="hidden layer sizes (default: 100,50)")
    t.add_argument("--activation", type=_activations, default="relu", metavar="NAME[,NAME...]",
                   help=f"hidden activation ({', '.join(HIDDEN)}), or one per hidden layer "
                        f"(default: relu)")
    t.add_argument("--task", choices=("auto", "classify", "regress"), default="auto",
                   help="classification or regression (default: auto, scikit-learn's rule: "
                        "a column of whole numbers is class labels, floats are a quantity)")
    t.add_argument("--output", choices=OUTPUTS, default=None,
                   help="output head (default: softmax for class labels, sigmoid for 0/1 "
                        "columns, identity for a quantity)")
    t.add_argument("--init", choices=INITS, default="uniform")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    t.add_argument("--lr", type=float, default=0.5, help="learning rate (default: 0.5)")
    t.add_argument("--schedule", choices=tuple(schedules.NAMES), default="constant",
                   help="learning-rate schedule over the epochs")
    t.add_argument("--momentum", type=float, default=0.0)
    t.add_argument("--nesterov", action="store_true")
    t.add_argument("--l2", type=float, default=0.0, help="L2 weight penalty")
    t.add_argument("--weight-decay", type=float, default=0.01,
                   help="adamw's decoupled weight decay (default: 0.01)")
    t.add_argument("--dropout", type=_rates, default=None, metavar="RATE[,RATE...]",
                   help="dropout on the hidden layers' outputs while training: one rate, or "
                        "one per hidden layer")
    t.add_argument("--class-weight", choices=("balanced",), default=None,
                   help="weigh each class's rows by n / (classes * rows of the class)")
    t.add_argument("--clip-norm", type=float, default=None, metavar="MAX",
                   help="clip each step's gradient to this global L2 norm")
    t.add_argument("--label-smoothing", type=float, default=0.0, metavar="A",
                   help="softmax/sigmoid label smoothing (default: 0)")
    t.add_argument("--delta", type=float, default=1.0,
                   help="the huber output's delta (default: 1)")
    t.add_argument("--batch-size", type=_positive_int, default=100)
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--seed", type=int, default=8)
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    t.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="visit the samples in order every epoch")
    t.add_argument("--validation-split", type=float, default=0.0, metavar="FRACTION",
                   help="hold out this fraction of the training rows for validation")
    t.add_argument("--early-stopping", action="store_true",
                   help="stop when the validation loss stops improving (needs "
                        "--validation-split) and keep the best epoch")
    t.add_argument("--patience", type=_positive_int, default=10)
    t.add_argument("--threads", type=_positive_int, default=None)
    t.add_argument("--save", metavar="MODEL.npz", help="write the trained model here")
    t.add_argument("--plot", metavar="CURVES.png",
                   help="write loss and accuracy curves (needs matplotlib)")
    t.add_argument("--json", metavar="HISTORY.json", help="write the history as JSON")
    t.add_argument("--quiet", action="store_true", help="no table, no progress bar")


def _use_parsers(sub):
    """The commands that use a saved model, compile and bench."""
    e = sub.add_parser("evaluate", help="loss, accuracy and confusion matrix on test data",
                       description="Evaluate a saved model on the test set.")
    e.add_argument("model", help="a model written by 'fastnn train --save'")
    e.add_argument("--data", help=_data_help() + " (its test split is used)")
    _csv_header_option(e)

    r = sub.add_parser("predict", help="write predictions for an input array",
                       description="Predict with a saved model.")
    r.add_argument("model")
    r.add_argument("--input", required=True, metavar="X",
                   help=".npy (2-D, or images), .npz (array 'x' or 'x_test') or .csv")
    r.add_argument("--output", metavar="FILE",
                   help=".npy or .csv; default: one prediction per line on stdout")
    _csv_header_option(r)
    r.add_argument("--proba", action="store_true",
                   help="write the output head's probabilities / values instead of labels")

    x = sub.add_parser("export", help="convert a saved model (ONNX)",
                       description="Write a saved model in another format.")
    x.add_argument("model", help="a model written by 'fastnn train --save'")
    x.add_argument("--onnx", required=True, metavar="OUT.onnx",
                   help="write an ONNX model (opset 17; needs the onnx package)")

    c = sub.add_parser("compile", help="compile the kernels ahead of time (fills the cache)",
                       description="Compile fastnn's kernels for this CPU in parallel "
                                   "processes, so later runs start at once (e.g. "
                                   "'RUN python -m fastnn compile --all' in a Dockerfile).")
    c.add_argument("--dtype", nargs="+", choices=("float32", "float64"), default=["float32"],
                   help="precisions to compile for (default: float32)")
    c.add_argument("--all", action="store_true",
                   help="every precision (float32 and float64)")
    c.add_argument("--jobs", type=_positive_int, default=None,
                   help="processes (default: one per core)")

    b = sub.add_parser("bench", help="side-by-side speed comparison (see bench/compare.py)",
                       add_help=False)
    b.add_argument("args", nargs=argparse.REMAINDER)


# ------------------------------------------------------------------ train
def _load(data, need_test=False, header=None):
    try:
        if data is None:
            train, test = datasets.load_mnist()
        else:
            train, test = datasets.load_arrays(data, header)
    except FileNotFoundError as e:
        raise CLIError(str(e)) from None
    if need_test and test is None:
        test = train  # a single-split file: evaluate on all of it
    return train, test


def _check_plot_backend():
    try:
        import matplotlib
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install 'fastnn[plot]'") from None
    matplotlib.use("Agg")


def _check_writable(path, flag):
    """Refuse an output that cannot be written before any work is done
    (training for an hour, then failing at the save, loses the model)."""
    if path is None:
        return
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise CLIError(f"{flag}: directory {d} does not exist")
    try:
        d = os.path.dirname(os.path.abspath(modelio.regular_destination(path)))
    except ValueError as e:
        raise CLIError(f"{flag} {e}") from None
    try:
        tempfile.TemporaryFile(dir=d).close()
    except OSError as e:
        raise CLIError(f"{flag} {path}: cannot write in {d} ({e.strerror})") from None
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise CLIError(f"{flag} {path}: the file is not writable")


def _write_atomically(path, write):
    """The command line's outputs are written as model files are: see
    :func:`fastnn.engine.modelio.atomic_write`."""
    modelio.atomic_write(path, write)


class _Table:
    """The per-epoch table, printed a line at a time."""

    def __init__(self, classify, val, test, out):
        self.cols = [("epoch", 5), ("loss", 8)] + ([("acc", 7)] if classify else [])
        if val:
            self.cols += [("val_loss", 8)] + ([("val_acc", 7)] if classify else [])
        if test:
            self.cols += [("test_loss", 9)] + ([("test_acc", 8)] if classify else [])
        self.cols += [("lr", 9), ("time", 6)]
        self.out = out
        print("  ".join(f"{n:>{w}}" for n, w in self.cols), file=out, flush=True)

    def row(self, values):
        cells = []
        for (name, w) in self.cols:
            v = values[name]
            if name == "epoch":
                cells.append(f"{v:>{w}d}")
            elif name.endswith("acc"):
                cells.append(f"{100 * v:>{w - 1}.2f}%")
            elif name == "time":
                cells.append(f"{v:>{w - 1}.2f}s")
            elif name == "lr":
                cells.append(_cell(v, w, 4, "g"))
            else:
                cells.append(_cell(v, w, 4, "f"))
        print("  ".join(cells), file=self.out, flush=True)


def _cell(v, width, digits, kind):
    """``v`` in exactly ``width`` characters: fixed-point with up to
    ``digits`` decimals (``kind`` "f") or significant digits ("g") when it
    fits, else in exponent form, so the columns stay aligned whatever the
    magnitude."""
    for d in range(digits, -1, -1):
        text = f"{v:.{d}{kind}}" if kind == "f" or d else f"{v:.1g}"
        if len(text) <= width:
            return text.rjust(width)
    for d in range(max(0, width - 7), -1, -1):
        text = f"{v:.{d}e}"
        if len(text) <= width:
            return text.rjust(width)
    return text


def cmd_train(args, out):
    if args.quiet:
        from ..runtime import compile_notice
        compile_notice.enable(False)
    if args.epochs < 0:
        raise CLIError(f"--epochs must be >= 0, got {args.epochs}")
    if args.plot:
        _check_plot_backend()
    _check_writable(args.save, "--save")
    _check_writable(args.json, "--json")
    _check_writable(args.plot, "--plot")
    if args.early_stopping and args.validation_split <= 0:
        raise CLIError("--early-stopping needs --validation-split (e.g. 0.1)")
    if args.threads:
        from .. import set_num_threads
        import numba
        set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    (x, y), test = _load(args.data, header=_header(args))
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2:
        raise CLIError(f"training inputs must be 2-D (samples, features), got shape {x.shape}")
    output, task = _choose_task(args, x, y)
    if output == "softmax":
        y = _class_labels(y)
        n_out = int(y.max()) + 1 if y.size else 1
        if test is not None and np.asarray(test[1]).size:
            test = (test[0], _class_labels(np.asarray(test[1]), "the test labels"))
            n_out = max(n_out, int(np.max(test[1])) + 1)
    else:
        y = y.astype(np.float64) if y.dtype.kind in "iub" else y
        n_out = 1 if y.ndim == 1 else y.shape[1]
    layers = [x.shape[1]] + args.layers + [n_out]
    net = Network(layers, hidden=args.activation, output=output, init=args.init,
                  seed=args.seed, dtype=args.dtype, delta=args.delta,
                  label_smoothing=args.label_smoothing)
    classify = output not in REGRESSION_OUTPUTS
    act = args.activation if isinstance(args.activation, str) else ",".join(args.activation)
    desc = (f"fastnn {__version__}: {'-'.join(map(str, layers))} {act}/{output}, "
            f"{args.optimizer} lr={args.lr:g} ({args.schedule}), batch {args.batch_size}, "
            f"{args.epochs} epochs, {args.dtype}, {x.shape[0]} training rows")
    if not args.quiet:
        print(desc, file=out, flush=True)
        print(f"task: {task}", file=out, flush=True)
    # The loss before training, on a sample: a first epoch that multiplies it
    # a million-fold is a step size the data cannot take, said at once.
    probe = slice(0, min(len(x), 2000))
    start_loss = net.evaluate(x[probe], y[probe])["loss"] if len(x) else float("nan")
    table = None
    if not args.quiet:
        table = _Table(classify, args.validation_split > 0, test is not None, out)
    test_hist = {"test_loss": [], "test_accuracy": []}

    def per_epoch(n, h):
        values = {"epoch": len(h["loss"]), "loss": h["loss"][-1], "acc": h["accuracy"][-1],
                  "lr": h["lr"][-1], "time": h["seconds"][-1]}
        if len(h["loss"]) == 1 and h["loss"][0] > 1e6 * start_loss > 0:
            print(f"warning: the training loss grew {h['loss'][0] / start_loss:.1e}-fold over "
                  f"the first epoch ({start_loss:.4g} -> {h['loss'][0]:.4g}): the learning "
                  f"rate --lr {args.lr:g} is too large for this data; lower it (e.g. "
                  f"--lr {args.lr / 100:g}) or scale the inputs and targets",
                  file=sys.stderr, flush=True)
        if "val_loss" in h:
            values.update(val_loss=h["val_loss"][-1], val_acc=h["val_accuracy"][-1])
        if test is not None:
            r = n.evaluate(*test)
            test_hist["test_loss"].append(r["loss"])
            test_hist["test_accuracy"].append(r.get("accuracy", float("nan")))
            values.update(test_loss=r["loss"], test_acc=test_hist["test_accuracy"][-1])
        if table is not None:
            table.row(values)

    t0 = time.perf_counter()
    interrupted = False
    try:
        net.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                optimizer=args.optimizer, momentum=args.momentum, nesterov=args.nesterov,
                l2=args.l2, lr_schedule=args.schedule, shuffle=args.shuffle,
                validation_split=args.validation_split, early_stopping=args.early_stopping,
                patience=args.patience, callbacks=[per_epoch],
                progress=not args.quiet, weight_decay=args.weight_decay,
                class_weight=args.class_weight, dropout=args.dropout,
                clip_norm=args.clip_norm)
    except KeyboardInterrupt as e:
        interrupts.keep_frames(e)
        interrupted = True
    # From here on the outputs are written whatever happens: a Ctrl-C now is
    # acted on once they are complete.
    with interrupts.deferred():
        return _finish_train(args, net, _TrainRun(layers, output, classify, test, test_hist,
                                                  t0, interrupted), out)


def _choose_task(args, x, y):
    """(output head, the header's "task:" text) from ``--task``,
    ``--output`` and, by default, the target's type as scikit-learn infers
    it (:func:`fastnn.datasets.target_type`)."""
    kind = datasets.target_type(y)
    if args.output is not None:
        classify = args.output not in REGRESSION_OUTPUTS
        why = f"--output {args.output}"
    elif args.task != "auto":
        classify = args.task == "classify"
        why = f"--task {args.task}"
    else:
        classify = kind in ("binary", "multiclass", "multilabel-indicator")
        why = f"a {kind} target, as scikit-learn infers it; --task overrides"
        if kind in ("binary", "multiclass"):
            k = len(np.unique(y))
            if k > max(2, len(y) / 5):
                raise CLIError(
                    f"the target (last column) has {k} distinct whole numbers in {len(y)} rows: "
                    f"more classes than a fifth of the rows looks like a quantity, not labels. "
                    f"Pass --task regress to fit it as a number, or --task classify to keep "
                    f"the {k} classes")
        elif kind == "multiclass-multioutput":
            raise CLIError(f"the target has {y.shape[1]} columns of whole numbers: pass --task "
                           f"regress (one value per column), or one-hot/0-1 columns to classify")
    output = args.output or (("sigmoid" if kind == "multilabel-indicator" else "softmax")
                             if classify else "identity")
    if not classify:
        return output, f"regression ({why})"
    if output == "softmax":
        labels = np.asarray(y)
        k = len(np.unique(labels)) if labels.ndim == 1 else labels.shape[1]
        return output, f"classification, {k} classes ({why})"
    return output, f"classification ({why})"


def _class_labels(y, what="class labels"):
    """``y`` as int64 class labels 0..K-1 (one column), or a clear error."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1 and set(np.unique(y).tolist()) <= {0, 1}:
        y = y.argmax(axis=1)  # one-hot rows
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise CLIError(f"softmax output needs one column of {what}, got shape {y.shape}")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise CLIError(f"{what} must be whole numbers 0..K-1 for classification; the target "
                       f"has fractions (a quantity? pass --task regress)")
    if y.dtype.kind not in "iuf":
        raise CLIError(f"{what} must be whole numbers 0..K-1, got {y.dtype}")
    if y.size and y.min() < 0:
        raise CLIError(f"{what} must be >= 0 (0..K-1), got {y.min():g}: relabel them, or pass "
                       f"--task regress")
    return y.astype(np.int64)


def _regression_report(net, x, y):
    """RMSE, MAE and R^2 (averaged over outputs, as scikit-learn's r2_score)
    of ``net`` on (x, y)."""
    y = np.asarray(y, np.float64)
    p = np.asarray(net.predict(x), np.float64).reshape(y.shape[0], -1)
    y = y.reshape(p.shape)
    err = p - y
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    ss_res = (err ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res > 0, 0.0, 1.0))
    return (f"RMSE {np.sqrt((err ** 2).mean()):.4g}, MAE {np.abs(err).mean():.4g}, "
            f"R\u00b2 {r2.mean():.4f}")


class _TrainRun(NamedTuple):
    """What ``fastnn train`` did, for its closing outputs."""
    layers: list           # the network's widths
    output: str            # its head
    classify: bool         # a classifier (accuracy is reported)
    test: Any              # (X, labels, T) of the test split, or None
    test_hist: dict        # test_loss / test_accuracy per epoch
    t0: float              # perf_counter at the start of training
    interrupted: bool      # by Ctrl-C


def _finish_train(args, net, run, out):
    layers, output, classify, test, test_hist, t0, interrupted = run
    hist = dict(getattr(net, "history", None) or {"loss": [], "accuracy": []})
    n_done = len(hist["loss"])
    if interrupted:
        print(f"\ninterrupted: keeping the model after epoch {n_done}"
              + ("" if n_done else " (no epoch completed: nothing is saved)"),
              file=sys.stderr, flush=True)
    if test is not None:
        # An interrupt can land between an epoch's end and its test
        # evaluation: the missing entry is that of the current model.
        if n_done and len(test_hist["test_loss"]) < n_done:
            r = net.evaluate(*test)
            test_hist["test_loss"].append(r["loss"])
            test_hist["test_accuracy"].append(r.get("accuracy", float("nan")))
        hist.update({k: v[:n_done] for k, v in test_hist.items()})
    total = time.perf_counter() - t0
    if not args.quiet:
        msg = f"trained {n_done} epochs in {total:.2f}s"
        if "best_epoch" in hist:
            msg += f"; restored the best epoch ({hist['best_epoch']}, by validation loss)"
        if test is not None and n_done:
            r = net.evaluate(*test)
            msg += f"; test loss {r['loss']:.4g}" + (
                f", test accuracy {100 * r['accuracy']:.2f}%" if classify
                else ", " + _regression_report(net, *test))
        print(msg, file=out, flush=True)
    if args.save and (n_done or not interrupted):
        try:
            net.save(args.save)
        except OSError as e:
            # Keep the trained model somewhere, and say where.
            rescue = os.path.join(tempfile.gettempdir(),
                                  f"fastnn-model-{os.getpid()}-{int(time.time())}.npz")
            net.save(rescue)
            raise CLIError(f"{e}; the trained model was saved to {rescue} instead") from None
        if not args.quiet:
            print(f"saved the model to {args.save}", file=out)
    if args.json:
        record = {"command": "train", "layers": layers, "hidden": args.activation,
                  "output": output, "optimizer": args.optimizer, "lr": args.lr,
                  "batch_size": args.batch_size, "epochs": args.epochs, "seed": args.seed,
                  "dtype": args.dtype, "interrupted": interrupted,
                  "history": {k: (v if isinstance(v, int) else [float(a) for a in v])
                              for k, v in hist.items()}}
        text = json.dumps(record, indent=1).encode()
        _write_atomically(args.json, lambda f: f.write(text))
    if args.plot and n_done:
        d = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(d):
            raise CLIError(f"--plot: directory {d} does not exist")
        confusion = None
        if output == "softmax" and test is not None:  # the final model on the test split
            xt, yt = test
            yt = np.asarray(yt)
            labels = (yt.argmax(axis=1) if yt.ndim == 2 else yt).astype(np.int64)
            confusion = plots.confusion_matrix(labels, net.predict(xt), net.n_outputs)
        with interrupts.deferred():
            plots.plot_history(hist, args.plot, confusion=confusion,
                               title="-".join(map(str, layers)) + f" {args.optimizer}")
        if not args.quiet:
            print(f"wrote the curves to {args.plot}", file=out)
    return 130 if interrupted else 0


# --------------------------------------------------------------- evaluate
def _load_model(path):
    try:
        modelio.regular_source(path)
    except (OSError, ValueError) as e:
        raise CLIError(str(e)) from None
    return Network.load(path)


def cmd_evaluate(args, out):
    net = _load_model(args.model)
    _, (xt, yt) = _load(args.data, need_test=True, header=_header(args))
    r = net.evaluate(xt, yt)
    print(f"model {args.model}: {net}", file=out)
    print(f"{len(xt)} test rows: loss {r['loss']:.4g}" + (
        f", accuracy {100 * r['accuracy']:.2f}%" if "accuracy" in r
        else ", " + _regression_report(net, xt, yt) if net.output in REGRESSION_OUTPUTS
        else ""), file=out)
    if net.output == "softmax":
        k = net.n_outputs
        labels = np.asarray(yt)
        if labels.ndim == 2:
            labels = labels.argmax(axis=1)
        m = plots.confusion_matrix(labels.astype(np.int64), net.predict(xt), k)
        w = max(5, len(str(m.max())) + 1)
        print("confusion matrix (rows: true class, columns: predicted class)", file=out)
        print(" " * 6 + "".join(f"{j:>{w}d}" for j in range(k)), file=out)
        for i in range(k):
            print(f"{i:>5d} " + "".join(f"{v:>{w}d}" for v in m[i]), file=out)
    return 0


# ---------------------------------------------------------------- predict
def _load_input(path, header=None):
    try:
        modelio.regular_source(path, "input file")
    except (OSError, ValueError) as e:
        raise CLIError(str(e)) from None
    low = path.lower()
    if low.endswith(".npy"):
        try:
            x = np.load(path, allow_pickle=False)
        except Exception as e:
            raise CLIError(f"{path}: not a readable .npy file ({e})") from None
    elif low.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as f:
                key = next((k for k in ("x", "X", "x_test") if k in f.files), None)
                if key is None:
                    raise CLIError(f"{path}: expected an array 'x' or 'x_test', found {f.files}")
                x = f[key]
        except CLIError:
            raise
        except Exception as e:
            raise CLIError(f"{path}: not a readable .npz file ({e})") from None
    elif low.endswith(".csv"):
        try:
            x = datasets.read_csv(path, header)
        except ValueError as e:
            raise CLIError(str(e)) from None
    else:
        raise CLIError(f"{path}: unsupported input (use .npy, .npz or .csv)")
    try:
        return datasets.as_2d(x, path, "input")
    except ValueError as e:
        raise CLIError(str(e)) from None


def cmd_predict(args, out):
    if not args.output and out is None:  # Python's sys.stdout when file descriptor 1 is closed
        raise CLIError("standard output is closed: give --output FILE for the predictions")
    net = _load_model(args.model)
    _check_writable(args.output, "--output")
    suffix = os.path.splitext(args.output)[1].lower() if args.output else ".csv"
    if suffix not in (".csv", ".npy"):
        raise CLIError(f"--output {args.output}: use a .npy or .csv file name")
    x = _load_input(args.input, _header(args))
    p = net.predict_proba(x) if args.proba else net.predict(x)
    fmt = "%d" if p.dtype.kind in "iu" else "%.7g"
    if suffix == ".npy":
        _write_atomically(args.output, lambda f: np.save(f, p))
    elif args.output:
        _write_atomically(args.output, lambda f: np.savetxt(f, p, fmt=fmt, delimiter=","))
    else:  # CSV on stdout
        np.savetxt(out, p, fmt=fmt, delimiter=",")
    if args.output:
        print(f"wrote {len(p)} predictions to {args.output}", file=sys.stderr)
    return 0


def cmd_export(args, out):
    net = _load_model(args.model)
    _check_writable(args.onnx, "--onnx")
    net.to_onnx(args.onnx)
    print(f"wrote {args.onnx} (ONNX opset 17, input 'input', output 'output')", file=out)
    return 0


def cmd_compile(args, out):
    from ..runtime import warmup

    dtypes = warmup.DTYPES if args.all else tuple(dict.fromkeys(args.dtype))
    return warmup.main(dtypes, args.jobs, out, argv=args.argv)


def cmd_bench(args, out):
    from ..integrations.benchmark import main as bench_main

    return bench_main(args.args, prog="fastnn bench")


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "export": cmd_export, "compile": cmd_compile, "bench": cmd_bench}


def main(argv=None, out=None):
    out = out if out is not None else sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        # Everything after 'bench' (including --help) belongs to the benchmark.
        args = argparse.Namespace(command="bench", args=argv[1:])
    else:
        args = build_parser().parse_args(argv)
        args.argv = argv
    try:
        return COMMANDS[args.command](args, out)
    except KeyboardInterrupt:
        # Outside a training run (loading data, compiling, writing files):
        # nothing to keep; the shell's status for Ctrl-C.
        print("\ninterrupted", file=sys.stderr, flush=True)
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`, which stopped reading: not an error
        # worth a message. Point stdout at devnull so the exit flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (CLIError, ValueError, TypeError, OSError, ImportError) as e:
        if isinstance(e, TrainingDivergedError):
            msg = str(e)
        else:
            msg = str(e) or type(e).__name__
        print(f"fastnn {args.command}: error: {msg}", file=sys.stderr)
        return 1


def run():
    sys.exit(main())
