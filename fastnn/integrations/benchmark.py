"""Side-by-side training speed: fastnn against its NumPy reference and, when
installed, PyTorch, JAX and scikit-learn, in one run.

Every system trains the same network on the same MNIST data with the same
hyper-parameters (plain mini-batch SGD, no shuffling), one epoch per call
(fastnn: ``fit(epochs=1)`` each time, so per-call overhead is included).
Each system runs a warm-up epoch and then the timed epochs back to back; the
table shows the median seconds per epoch, the GFLOP/s of the dense products
and their share of np.matmul's; a closing line gives each workload's share
of the kernels' ceiling (:func:`tile_peak`). Run it with ``python
bench/compare.py`` or ``fastnn bench``.

By default each system's block runs in a fresh Python process, one after
the other: libraries sharing a process disturb each other's timings (after
heavy OpenBLAS calls its threads keep spinning; with JAX's CPU client
created before fastnn's first ``fit``, fastnn's epochs ran ~15% slower, a
cause not pinned down). ``--same-process`` runs them all in this process.
"""
import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

from ..engine.numpy_engine import one_blas_thread

WORKLOADS = {
    "classic": dict(layers=[784, 100, 50, 10], batch_size=100, lr=0.5),
    "wide": dict(layers=[784, 1024, 1024, 10], batch_size=256, lr=0.1),
    # Inference: class probabilities of the 10000-row MNIST test set from
    # the classic network (one call per timing; a "predict" system's run()).
    "predict": dict(layers=[784, 100, 50, 10], rows=10000),
    # Small data: a whole MLPClassifier(hidden_layer_sizes=(50,), max_iter=200,
    # random_state=0).fit on a scikit-learn toy dataset (float64, as loaded;
    # Adam, batches of min(200, n)); a "fit" system's run().
    "iris": dict(layers=[4, 50, 3], dataset="iris", max_iter=200),
    "digits": dict(layers=[64, 50, 10], dataset="digits", max_iter=200),
}
SMALL = ("iris", "digits")

# Tabular training: synthetic data of the shapes users train MLPs on (row
# counts, widths and classes of public tabular sets named in the comments),
# one epoch per call without shuffling. ``classes`` 1 is regression
# (identity output, squared error); otherwise softmax cross-entropy.
TABULAR = {
    "higgs": dict(rows=200_000, layers=[28, 256, 256, 2], batch_size=512,
                  optimizer="adam", lr=1e-3),                      # HIGGS
    "covtype": dict(rows=100_000, layers=[54, 128, 64, 7], batch_size=256,
                    optimizer="adam", lr=1e-3),                    # covertype
    "text": dict(rows=20_000, layers=[2000, 512, 20], batch_size=128,
                 optimizer="adam", lr=1e-3),                       # 20 newsgroups, hashed
    "deep": dict(rows=50_000, layers=[100] + [128] * 6 + [10], batch_size=256,
                 optimizer="adam", lr=1e-3),
    "housing": dict(rows=50_000, layers=[8, 64, 64, 1], batch_size=64,
                    optimizer="adam", lr=1e-3),                    # California housing
    "products": dict(rows=30_000, layers=[300, 1024, 100], batch_size=1024,
                     optimizer="sgd", lr=0.1),                     # 100 classes
    "narrow": dict(rows=50_000, layers=[50] + [32] * 8 + [3], batch_size=32,
                   optimizer="sgd", lr=0.05),
}
WORKLOADS.update(TABULAR)


def tabular_data(wl, dtype="float32"):
    """The synthetic ``(x, y)`` of a :data:`TABULAR` workload: standard
    normal features; labels are the argmax of a random linear map (so there
    is something to learn), regression targets a smooth function of it."""
    spec = TABULAR[wl]
    rng = np.random.default_rng(0)
    d, classes = spec["layers"][0], spec["layers"][-1]
    x = rng.standard_normal((spec["rows"], d), dtype=np.float32).astype(dtype)
    proj = rng.standard_normal((d, max(classes, 2))) / np.sqrt(d)
    # On one BLAS thread: OpenBLAS's threads spin for ~0.1 s after a
    # product, and a fit started meanwhile found its thread pool slow and
    # ran on one thread (asv times fits right after this).
    with one_blas_thread():
        z = x @ proj
    if classes == 1:
        return x, np.sin(z[:, :1]) + 0.5 * z[:, 1:2]
    return x, np.argmax(z, axis=1).astype(np.int64)


def epoch_flops(layers, n):
    """Dense FLOPs of one epoch: forward X@W, weight gradient X.T@dU and
    input gradient dU@W.T (none for the first layer), 2 per multiply-add."""
    kn = [k * m for k, m in zip(layers[:-1], layers[1:])]
    return 2 * n * (2 * sum(kn) + sum(kn[1:]))


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def matmul_peak(reps=30):
    """Peak GFLOP/s of np.matmul at 512^3 float32 (the machine's BLAS): the
    best of ``reps`` calls after a warm-up (a peak, so the best call; the
    median moved with the machine's noise, ~170-260)."""
    a = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    out = np.empty_like(a)
    for _ in range(5):
        np.matmul(a, a, out=out)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        np.matmul(a, a, out=out)
        times.append(time.perf_counter() - t)
    return 2 * 512 ** 3 / min(times) / 1e9


def tile_peak(dtype="float32", reps=20000, rounds=25):
    """GFLOP/s of fastnn's register tile (:func:`.intrinsics.tile_fma`, the
    tile every dense product runs) on operands held in L1, on every thread
    at once: the ceiling of the kernels' products on this machine. The best
    of ``rounds`` timed loops (~10 ms each: short, as a shared host's slow
    spells last longer). An epoch needing more than this cannot be reached
    by tuning the kernels."""
    import numba

    from ..runtime import compile_notice

    fn, mr, nr, k = _tile_loop(np.dtype(dtype).name)
    rng = np.random.default_rng(0)
    a = rng.random(2 * mr * k).astype(dtype)
    b = rng.random(k * nr).astype(dtype)
    out = np.empty(numba.get_num_threads(), dtype)
    with compile_notice.silenced():
        fn(a, b, 10, out)
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        fn(a, b, reps, out)
        best = max(best, 2 * mr * nr * k * reps * out.size / (time.perf_counter() - t) / 1e9)
    return best


@functools.lru_cache(maxsize=None)
def _tile_loop(dtype):
    """The compiled loop of :func:`tile_peak` (compiled on first use, a few
    seconds; not cached on disk: only this report runs it)."""
    from numba import carray, njit, prange

    from ..kernels.intrinsics import stack_buffer, tile_fma
    from ..kernels.layout import MR32, MR64, NR, VW32, VW64

    MR, VW = (MR64, VW64) if dtype == "float64" else (MR32, VW32)
    K = 24576 // (NR * np.dtype(dtype).itemsize)  # B: 24 KiB, two A panels: 4 KiB
    ACC = MR * NR

    @njit(parallel=True)
    def loop(A, B, reps, out):
        for t in prange(out.shape[0]):
            p = stack_buffer(ACC, A)
            acc = carray(p, (ACC,))
            s = A[0] * 0  # (A's dtype; the stack buffer is uninitialised)
            for r in range(reps):
                # Two A panels in turn: no call repeats the one before it,
                # so none can be hoisted out of the loop.
                tile_fma(p, A, (r & 1) * MR * K, MR, K, 1, B, 0, NR, K, MR, NR, VW, 0)
                s += acc[r % ACC]
            out[t] = s

    return loop, MR, NR, K


# --------------------------------------------------------------------------
# systems: each returns an object whose epoch() trains one epoch
# --------------------------------------------------------------------------
class FastnnSystem:
    key = "fastnn"
    name = "fastnn"

    def __init__(self, x, y, layers, batch_size, lr, dtype="float32", optimizer="sgd"):
        import fastnn

        self.net = fastnn.Network(layers, seed=8, dtype=dtype, output=_output(layers))
        self.args = (x, y)
        self.kw = dict(epochs=1, batch_size=batch_size, lr=lr, shuffle=False,
                       optimizer=optimizer)

    def epoch(self):
        self.net.fit(*self.args, **self.kw)


class ReferenceSystem:
    key = "reference"
    name = "fastnn.reference (NumPy)"

    def __init__(self, x, y, layers, batch_size, lr, dtype="float32", optimizer="sgd"):
        import fastnn
        from fastnn import reference

        net = fastnn.Network(layers, seed=8, dtype=dtype)
        self.params = [(W.copy(), b.copy()) for W, b in zip(net.weights, net.biases)]
        self.reference, self.output = reference, _output(layers)
        self.opt = reference.Optimizer(self.params, optimizer, lr)
        self.x, self.y, self.bs = x, (y if y.ndim > 1 or layers[-1] > 1 else y[:, None]), batch_size

    def epoch(self):
        # Contiguous slices, as a user of the reference would write it.
        r, x, y, bs = self.reference, self.x, self.y, self.bs
        for s in range(0, x.shape[0], bs):
            _, grads = r.gradients(self.params, x[s:s + bs], y[s:s + bs], output=self.output)
            self.opt.step(self.params, grads, min(bs, x.shape[0] - s))


class TorchSystem:
    key = "torch"
    name = "PyTorch (eager)"
    threads = None  # fastnn's

    def __init__(self, x, y, layers, batch_size, lr, dtype="float32", optimizer="sgd"):
        import torch

        self.torch = torch
        torch.set_num_threads(self.threads or __import__("fastnn").get_num_threads())
        torch.manual_seed(8)
        mods = []
        for i, (k, m) in enumerate(zip(layers[:-1], layers[1:])):
            mods.append(torch.nn.Linear(k, m))
            if i < len(layers) - 2:
                mods.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*mods)
        if dtype == "float64":
            self.model = self.model.double()
        make = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
        self.opt = make(self.model.parameters(), lr=lr)
        regress = layers[-1] == 1
        self.loss = torch.nn.MSELoss() if regress else torch.nn.CrossEntropyLoss()
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(y.reshape(-1, 1).astype(x.dtype) if regress else y)
        self.bs = batch_size

    def epoch(self):
        for s in range(0, self.x.shape[0], self.bs):
            self.opt.zero_grad(set_to_none=True)
            out = self.model(self.x[s:s + self.bs])
            self.loss(out, self.y[s:s + self.bs]).backward()
            self.opt.step()


class Torch1System(TorchSystem):
    key = "torch1"
    name = "PyTorch (eager, 1 thread)"
    threads = 1


class JaxSystem:
    key = "jax"
    name = "JAX (jit, lax.scan)"

    def __init__(self, x, y, layers, batch_size, lr, dtype="float32", optimizer="sgd"):
        if optimizer != "sgd" or layers[-1] == 1:
            raise NotImplementedError("written for SGD and softmax only")
        import jax
        import jax.numpy as jnp

        rng = np.random.RandomState(8)
        params = [(jnp.asarray((rng.rand(k, m) * 0.2 - 0.1).astype(x.dtype)),
                   jnp.zeros(m, x.dtype)) for k, m in zip(layers[:-1], layers[1:])]
        nb = x.shape[0] // batch_size  # full batches only (scan needs equal shapes)
        xb = jnp.asarray(x[:nb * batch_size].reshape(nb, batch_size, -1))
        yb = jnp.asarray(y[:nb * batch_size].reshape(nb, batch_size))

        def loss_fn(p, xx, yy):
            h = xx
            for W, b in p[:-1]:
                h = jax.nn.relu(h @ W + b)
            z = h @ p[-1][0] + p[-1][1]
            return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(yy.shape[0]), yy])

        def step(p, batch):
            g = jax.grad(loss_fn)(p, *batch)
            return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g), None

        @jax.jit
        def epoch(p):
            return jax.lax.scan(step, p, (xb, yb))[0]

        self.params, self.fn = params, epoch

    def epoch(self):
        self.params = self.fn(self.params)
        self.params[0][0].block_until_ready()


class SklearnSystem:
    key = "sklearn"
    name = "scikit-learn MLP (partial_fit)"

    def __init__(self, x, y, layers, batch_size, lr, dtype="float32", optimizer="sgd"):
        import warnings

        from sklearn.neural_network import MLPClassifier, MLPRegressor

        warnings.filterwarnings("ignore", module="sklearn")
        regress = layers[-1] == 1
        self.clf = (MLPRegressor if regress else MLPClassifier)(
            hidden_layer_sizes=tuple(layers[1:-1]), solver=optimizer, learning_rate_init=lr,
            batch_size=batch_size, momentum=0.0, alpha=0.0, shuffle=False, random_state=8)
        self.x, self.y = x, (y.ravel() if regress else y)
        self.kw = {} if regress else dict(classes=np.arange(layers[-1]))

    def epoch(self):
        self.clf.partial_fit(self.x, self.y, **self.kw)


def _output(layers):
    return "identity" if layers[-1] == 1 else "softmax"


SYSTEMS = [FastnnSystem, ReferenceSystem, TorchSystem, JaxSystem, SklearnSystem]
TABULAR_SYSTEMS = [FastnnSystem, ReferenceSystem, TorchSystem, Torch1System, SklearnSystem]


# --------------------------------------------------------------------------
# inference: each returns an object whose epoch() computes the class
# probabilities of every row of x with the same weights (fastnn's
# initialisation, seed 8)
# --------------------------------------------------------------------------
def _classic_net(layers, dtype):
    import fastnn

    return fastnn.Network(layers, seed=8, dtype=dtype)


class FastnnPredict:
    key = "fastnn"
    name = "fastnn predict_proba"

    def __init__(self, x, layers, dtype):
        self.net, self.x = _classic_net(layers, dtype), x

    def epoch(self):
        self.net.predict_proba(self.x)


class ReferencePredict:
    key = "reference"
    name = "fastnn.reference forward (NumPy)"

    def __init__(self, x, layers, dtype):
        from fastnn import reference

        net = _classic_net(layers, dtype)
        self.params = [(W.copy(), b.copy()) for W, b in zip(net.weights, net.biases)]
        self.reference, self.x = reference, x

    def epoch(self):
        r = self.reference
        r.output_probabilities(r.forward(self.params, self.x)[-1], "softmax")


class TorchPredict:
    key = "torch"
    name = "PyTorch (inference_mode)"

    def __init__(self, x, layers, dtype):
        import torch

        torch.set_num_threads(__import__("fastnn").get_num_threads())
        self.torch, self.model = torch, _classic_net(layers, dtype).to_torch()
        self.x = torch.from_numpy(x)

    def epoch(self):
        with self.torch.inference_mode():
            self.model(self.x)


class OnnxPredict:
    key = "onnxruntime"
    name = "onnxruntime (CPU)"

    def __init__(self, x, layers, dtype):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = __import__("fastnn").get_num_threads()
        model = _classic_net(layers, dtype).to_onnx().SerializeToString()
        self.sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        self.x = x

    def epoch(self):
        self.sess.run(None, {"input": self.x})


class SklearnPredict:
    key = "sklearn"
    name = "scikit-learn MLPClassifier.predict_proba"

    def __init__(self, x, layers, dtype):
        import warnings

        from sklearn.neural_network import MLPClassifier

        warnings.filterwarnings("ignore", module="sklearn")
        net = _classic_net(layers, dtype)
        clf = MLPClassifier(hidden_layer_sizes=tuple(layers[1:-1]), max_iter=1)
        clf.fit(x[:layers[-1] * 5], np.arange(layers[-1] * 5) % layers[-1])
        clf.coefs_ = [W.copy() for W in net.weights]
        clf.intercepts_ = [b.copy() for b in net.biases]
        self.clf, self.x = clf, x

    def epoch(self):
        self.clf.predict_proba(self.x)


PREDICTORS = [FastnnPredict, ReferencePredict, TorchPredict, OnnxPredict, SklearnPredict]


# --------------------------------------------------------------------------
# small data: each epoch() is a whole fit (its epochs, in n_iter, differ
# between the two: their random initialisations do)
# --------------------------------------------------------------------------
class _SmallFit:
    def __init__(self, x, y, max_iter):
        import warnings

        warnings.filterwarnings("ignore", message=".*Maximum iterations.*")
        warnings.filterwarnings("ignore", message=".*hasn't converged.*")
        self.x, self.y, self.max_iter, self.n_iter = x, y, max_iter, None
        self.cls = self.estimator()

    def epoch(self):
        est = self.cls(hidden_layer_sizes=(50,), max_iter=self.max_iter, random_state=0)
        est.fit(self.x, self.y)
        self.n_iter = est.n_iter_


class FastnnSmall(_SmallFit):
    key, name = "fastnn", "fastnn MLPClassifier"

    @staticmethod
    def estimator():
        from fastnn import MLPClassifier
        return MLPClassifier


class SklearnSmall(_SmallFit):
    key, name = "sklearn", "scikit-learn MLPClassifier"

    @staticmethod
    def estimator():
        from sklearn.neural_network import MLPClassifier
        return MLPClassifier


SMALL_FITTERS = [FastnnSmall, SklearnSmall]
# What --only accepts: every system's key, once.
SYSTEM_KEYS = list(dict.fromkeys(c.key for c in SYSTEMS + TABULAR_SYSTEMS + PREDICTORS
                                 + SMALL_FITTERS))


def _systems(wl):
    if wl in TABULAR:
        return TABULAR_SYSTEMS
    return PREDICTORS if wl == "predict" else SMALL_FITTERS if wl in SMALL else SYSTEMS


@contextlib.contextmanager
def _environ(**values):
    """Environment variables set for the duration of a ``with`` block."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _block(key, wl, epochs, dtype, x=None, y=None):
    """One system's block: a warm-up epoch (compilation, caches, thread
    pools), then ``epochs`` timed epochs back to back. Returns the epoch
    times, or a string saying why the system was skipped.

    Blocks, not interleaved rounds: after a NumPy/BLAS call OpenBLAS's
    worker threads keep spinning for a while, and on a 2-core machine an
    epoch of another system started inside that window was measured up to
    ~50 ms slower (for fastnn and PyTorch alike)."""
    spec = WORKLOADS[wl]
    if wl in SMALL:
        try:
            from sklearn import datasets
        except ImportError as e:
            return f"not installed ({e.name})"
        x, y = getattr(datasets, f"load_{spec['dataset']}")(return_X_y=True)
    elif wl == "predict":
        import fastnn

        x = np.ascontiguousarray(fastnn.load_mnist()[1][0][:spec["rows"]], dtype)
    elif wl in TABULAR:
        x, y = tabular_data(wl, dtype)
    elif x is None:
        import fastnn

        (x, y), _ = fastnn.load_mnist()
        x = x.astype(dtype)
    cls = {c.key: c for c in _systems(wl)}[key]
    try:
        if wl == "predict":
            system = cls(x, spec["layers"], dtype)
        elif wl in SMALL:
            system = cls(x, y, spec["max_iter"])
        else:
            system = cls(x, y, spec["layers"], spec["batch_size"], spec["lr"], dtype,
                         spec.get("optimizer", "sgd"))
    except ImportError as e:
        return f"not installed ({e.name})"
    except NotImplementedError as e:
        return str(e)
    time.sleep(1.0)  # let threads of whatever ran before go back to sleep
    for _ in range(5 if wl == "predict" else 1):
        # Calls of a few ms ran ~20% slower over their first ~10 (every
        # system): more warm-up for them.
        system.epoch()
    from ..runtime import cold_start

    def compiled():
        # fastnn's timed epochs run the compiled kernels, never NumPy.
        if key == "fastnn":
            return _environ(FASTNN_BACKEND="compiled")
        return contextlib.nullcontext()

    if key == "fastnn" and (cold_start._asked or cold_start._others):
        # An empty kernel cache: the warm-up ran on NumPy while a helper
        # (this process's, or another's holding the cache's lock) compiled.
        cold_start.wait()
        with compiled():
            system.epoch()
    times = []
    with compiled():
        for _ in range(epochs):
            t = time.perf_counter()
            system.epoch()
            times.append(time.perf_counter() - t)
    if wl in SMALL:
        return {"times": times, "n_iter": system.n_iter}
    return times


def _block_in_subprocess(key, wl, epochs, threads, dtype):
    import subprocess

    code = ("import json, sys, fastnn; from fastnn.integrations import benchmark as b; "
            f"fastnn.set_num_threads({threads}); "
            f"print(json.dumps(b._block({key!r}, {wl!r}, {epochs}, {dtype!r})))")
    from ..runtime.cold_start import python_c

    r = subprocess.run(python_c(code), capture_output=True, text=True)
    if r.returncode != 0:
        return f"failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"
    return json.loads(r.stdout.strip().splitlines()[-1])


STARTUP_SCRIPT = """
import time, numpy as np
import {module}
(x, y), _ = __import__("fastnn").datasets.load_mnist()
x, y = x[:1000], y[:1000]
{body}
print("@@fit-end", time.time())
import sys
if "fastnn" in sys.modules:
    __import__("fastnn.runtime.cold_start").runtime.cold_start.wait()  # the next run finds the cache filled
"""
STARTUP_BODIES = {
    "fastnn": "fastnn.Network([784, 100, 50, 10], seed=8).fit(x, y, epochs=1, verbose=False)",
    "torch": """
model = torch.nn.Sequential(torch.nn.Linear(784, 100), torch.nn.ReLU(), torch.nn.Linear(100, 50),
                            torch.nn.ReLU(), torch.nn.Linear(50, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
for s in range(0, 1000, 100):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(xt[s:s + 100]), yt[s:s + 100]).backward()
    opt.step()
""",
}


def startup(out=sys.stdout):
    """Seconds from a fresh process's start to the end of a one-epoch fit of
    the classic network on 1000 MNIST rows: fastnn on an empty kernel cache
    (cold: a first run after installing) as it runs by default (on NumPy
    while a helper compiles: fastnn/runtime/cold_start.py) and compiling in-process
    (``FASTNN_BACKGROUND_COMPILE=0``), then on the cache the first run's
    helper left (warm), and PyTorch's import and same epoch when installed."""
    import importlib.util
    import subprocess
    import tempfile

    from ..runtime.cold_start import python_c

    def timed(module, env):
        code = STARTUP_SCRIPT.format(module=module, body=STARTUP_BODIES[module])
        t0 = time.time()
        out = subprocess.run(python_c(code), env=env, check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        end = next(line for line in out.stdout.splitlines() if line.startswith("@@fit-end"))
        return float(end.split()[1]) - t0

    rows = {}
    for label, background in (("NumPy while compiling", "1"), ("compiled in-process", "0")):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache, FASTNN_BACKGROUND_COMPILE=background)
            rows[f"fastnn, empty cache ({label})"] = timed("fastnn", env)
            if background == "1":
                rows["fastnn, cached kernels (warm)"] = timed("fastnn", env)
    if importlib.util.find_spec("torch") is not None:
        rows["PyTorch"] = timed("torch", dict(os.environ))
    print("\nstart-up: fresh process to the end of a 1-epoch classic fit on 1000 rows",
          file=out)
    for name, seconds in rows.items():
        print(f"{name:46s} {seconds:8.1f} s", file=out)
    return {k: round(v, 2) for k, v in rows.items()}


def _small_table(wl, spec, fits, threads, systems, isolate, result, out):
    """A small-data workload's rows: seconds per whole fit (median), their
    ratio to fastnn's, and the epochs each ran (and so time per epoch)."""
    fits = max(fits, 7)
    rows, base = [], None
    for cls in SMALL_FITTERS:
        if systems and cls.key not in systems:
            continue
        r = (_block_in_subprocess(cls.key, wl, fits, threads, "float64") if isolate
             else _block(cls.key, wl, fits, "float64"))
        if isinstance(r, str):
            result["skipped"][cls.name] = r
            continue
        med = statistics.median(r["times"])
        base = med if cls.key == "fastnn" else base
        rows.append(dict(system=cls.name, s_per_fit=round(med, 5), n_iter=r["n_iter"],
                         ms_per_epoch=round(1e3 * med / r["n_iter"], 4),
                         all_fits=[round(t, 5) for t in r["times"]]))
    for row in rows:
        row["vs_fastnn"] = round(row["s_per_fit"] / base, 2) if base else None
    result["workloads"][wl] = dict(spec, results=rows)
    print(f"\n{wl}: MLPClassifier(hidden_layer_sizes=(50,), max_iter={spec['max_iter']}, "
          f"random_state=0).fit, float64; median of {fits} fits", file=out)
    print(f"{'system':34s} {'ms/fit':>8s} {'x fastnn':>9s} {'epochs':>7s} {'ms/epoch':>9s}",
          file=out)
    for r in rows:
        ratio = "" if r["vs_fastnn"] is None else f"{r['vs_fastnn']:9.2f}"
        print(f"{r['system']:34s} {1e3 * r['s_per_fit']:8.1f} {ratio:>9s} {r['n_iter']:7d} "
              f"{r['ms_per_epoch']:9.3f}", file=out)


def _print_table(wl, spec, rows, flops, reps, out):
    """One workload's rows: ms per call (predict) or s per epoch, GFLOP/s."""
    if wl == "predict":
        print(f"\npredict: {spec['layers']}, class probabilities of {spec['rows']} MNIST "
              f"test rows, {flops / 1e9:.2f} GFLOP dense; median of {reps} calls", file=out)
        print(f"{'system':40s} {'ms/call':>8s} {'x fastnn':>9s}", file=out)
        for r in rows:
            ratio = "" if r["vs_fastnn"] is None else f"{r['vs_fastnn']:9.2f}"
            print(f"{r['system']:40s} {1e3 * r['s_per_epoch']:8.2f} {ratio:>9s}", file=out)
        return
    rows_of = f"{spec['rows']} synthetic rows" if wl in TABULAR else "60000 MNIST rows"
    print(f"\n{wl}: {spec['layers']}, {rows_of}, batch {spec['batch_size']}, "
          f"{spec.get('optimizer', 'sgd')} lr {spec['lr']}, {flops / 1e9:.1f} GFLOP/epoch; "
          f"median of {reps} epochs", file=out)
    print(f"{'system':34s} {'s/epoch':>8s} {'x fastnn':>9s} {'GFLOP/s':>8s} {'of peak':>8s}",
          file=out)
    for r in rows:
        ratio = "" if r["vs_fastnn"] is None else f"{r['vs_fastnn']:9.2f}"
        print(f"{r['system']:34s} {r['s_per_epoch']:8.3f} {ratio:>9s} "
              f"{r['gflops']:8.1f} {100 * r['share_of_matmul_peak']:7.0f}%", file=out)


def _ceiling_shares(result, ceiling, out):
    """Each system's GFLOP/s as a share of the kernels' ceiling
    (:func:`tile_peak`): how much of the machine an epoch uses."""
    result["tile_peak_gflops"] = round(ceiling, 1)
    line = []
    for wl, w in result["workloads"].items():
        for r in w["results"]:
            if "gflops" in r and wl != "predict":
                r["share_of_tile_peak"] = round(r["gflops"] / ceiling, 3)
                if r["system"] == FastnnSystem.name:
                    line.append(f"{wl} {100 * r['share_of_tile_peak']:.0f}%")
    print(f"\nthe kernels' ceiling (fastnn's register tile on L1 data, the higher of a "
          f"reading at the start and one at the end): {ceiling:.0f} GFLOP/s"
          + ("; fastnn's share: " + ", ".join(line) if line else ""), file=out)


def _tabular_summary(result, out):
    """One line per tabular workload: fastnn's seconds per epoch, its share
    of np.matmul's GFLOP/s and of the kernels' ceiling (:func:`tile_peak`),
    and each other system's time over fastnn's."""
    others = [c for c in TABULAR_SYSTEMS if c.key != "fastnn"]
    print("\ntabular summary: fastnn s/epoch, its share of np.matmul's GFLOP/s and of the "
          "kernels' ceiling, and each system's time / fastnn's", file=out)
    print(f"{'workload':10s} {'s/epoch':>8s} {'matmul':>7s} {'tile':>5s} "
          + " ".join(f"{c.key:>9s}" for c in others), file=out)
    for wl, w in result["workloads"].items():
        if wl not in TABULAR:
            continue
        by = {r["system"]: r for r in w["results"]}
        mine = by.get(FastnnSystem.name)
        if mine is None:
            continue
        cells = [f"{by[c.name]['vs_fastnn']:9.2f}" if c.name in by else f"{'-':>9s}"
                 for c in others]
        print(f"{wl:10s} {mine['s_per_epoch']:8.3f} "
              f"{100 * mine['share_of_matmul_peak']:6.0f}% "
              f"{100 * mine['share_of_tile_peak']:4.0f}% " + " ".join(cells), file=out)


def run(workloads=("classic", "wide"), epochs=5, threads=None, dtype="float32",
        systems=None, out=sys.stdout, isolate=True, with_startup=False):
    import fastnn

    if threads:
        fastnn.set_num_threads(threads)
    threads = fastnn.get_num_threads()
    (x, y), _ = fastnn.load_mnist()
    x = x.astype(dtype)
    # (The tile first: OpenBLAS's threads spin on a core for a while after
    # np.matmul returns.)
    ceiling = [tile_peak(dtype)]
    peak = matmul_peak()
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_name(),
        "threads": threads,
        "dtype": dtype,
        "epochs_timed": epochs,
        "process_per_system": isolate,
        "np_matmul_512_gflops": round(peak, 1),
        "command": "python bench/compare.py " + " ".join(sys.argv[1:]),
        "workloads": {},
        "skipped": {},
    }
    from fastnn._config import TARGET_CPU, TARGET_ISA

    result["kernel_isa"] = TARGET_ISA
    result["kernel_cpu"] = TARGET_CPU
    print(f"{result['cpu']}, kernels for {TARGET_ISA} ({TARGET_CPU}), {threads} threads, {dtype}; "
          f"np.matmul 512^3: {peak:.0f} GFLOP/s", file=out)
    for wl in workloads:
        spec = WORKLOADS[wl]
        predict = wl == "predict"
        if wl in SMALL:
            _small_table(wl, spec, epochs, threads, systems, isolate, result, out)
            continue
        if predict:
            kn = [k * m for k, m in zip(spec["layers"][:-1], spec["layers"][1:])]
            flops = 2 * spec["rows"] * sum(kn)  # dense forward FLOPs
        else:
            flops = epoch_flops(spec["layers"], spec.get("rows", x.shape[0]))
        chosen = [cls for cls in _systems(wl) if not systems or cls.key in systems]
        if not chosen:
            print(f"{wl}: none of {' '.join(systems)} runs this workload (it has: "
                  f"{' '.join(c.key for c in _systems(wl))})", file=out)
            continue
        times = {}
        for cls in chosen:
            reps = max(epochs, 20) if predict else epochs  # calls of a few ms: more of them
            if isolate:
                ts = _block_in_subprocess(cls.key, wl, reps, threads, dtype)
            else:
                ts = _block(cls.key, wl, reps, dtype, x, y)
            if isinstance(ts, str):
                result["skipped"][cls.name] = ts
            else:
                times[cls.name] = ts
        fastnn_name = next(c.name for c in _systems(wl) if c.key == "fastnn")
        base = statistics.median(times[fastnn_name]) if fastnn_name in times else None
        rows = []
        for name, ts in times.items():
            med = statistics.median(ts)
            gf = flops / med / 1e9
            rows.append(dict(system=name, s_per_epoch=round(med, 6 if predict else 4),
                             vs_fastnn=round(med / base, 2) if base else None,
                             gflops=round(gf, 1), share_of_matmul_peak=round(gf / peak, 3),
                             all_epochs=[round(t, 6 if predict else 4) for t in ts]))
        result["workloads"][wl] = dict(spec, epoch_gflop=round(flops / 1e9, 2), results=rows)
        _print_table(wl, spec, rows, flops, reps, out)
    for name, why in result["skipped"].items():
        print(f"skipped {name}: {why}", file=out)
    if result["workloads"]:
        # Measured again at the end, the higher reading kept: a shared
        # host's slow spell can last through one measurement.
        ceiling.append(tile_peak(dtype))
        _ceiling_shares(result, max(ceiling), out)
    if any(wl in TABULAR for wl in workloads):
        _tabular_summary(result, out)
    if with_startup:
        result["startup_seconds"] = startup(out)
    return result


def avx2_environment(environ=None):
    """The environment variables that make every system here run AVX2 code
    on an AVX-512 host, for measuring the AVX2 path without an AVX2
    machine: fastnn's kernels (Numba's target: the host's features with
    every AVX-512 one off, in a cache directory of their own), OpenBLAS
    (NumPy, the reference), MKL and oneDNN (PyTorch's matmuls) and ATen's
    own vector code. Without ``avx2``/``fma`` on the host: None."""
    import llvmlite.binding as ll

    env = dict(os.environ if environ is None else environ)
    host = ll.get_host_cpu_features()
    if not (host.get("avx2") and host.get("fma")):
        return None
    wide = ("avx512", "amx", "avxvnni", "evex512", "avx10", "avxifma", "avxneconvert")
    env["NUMBA_CPU_NAME"] = "haswell"
    env["NUMBA_CPU_FEATURES"] = ",".join(
        ("+" if on and not k.startswith(wide) else "-") + k for k, on in host.items())
    if "NUMBA_CACHE_DIR" not in env:
        from ..runtime.kernel_cache import user_cache_dir

        env["NUMBA_CACHE_DIR"] = user_cache_dir() + "-avx2"
    env.update(OPENBLAS_CORETYPE="Haswell", MKL_ENABLE_INSTRUCTIONS="AVX2",
               ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2",
               FASTNN_ISA_RUN="avx2")
    return env


def rerun_for_isa(isa, argv):
    """``--isa avx2``: run this command again (``argv``) in
    :func:`avx2_environment`; returns its exit status, or None when nothing
    needs re-running (host ISA, or already re-run)."""
    if isa == "host" or os.environ.get("FASTNN_ISA_RUN") == isa:
        return None
    env = avx2_environment()
    if env is None:
        raise SystemExit("--isa avx2: this CPU has no AVX2+FMA")
    import subprocess

    return subprocess.call(argv, env=env)


def main(argv=None, prog=None):
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--isa", choices=["host", "avx2"], default="host",
                   help="avx2: every system on AVX2 code even on an AVX-512 host "
                        "(fastnn's kernels, OpenBLAS, MKL, oneDNN; see avx2_environment)")
    p.add_argument("--workload", nargs="+", default=["all"],
                   choices=["classic", "wide", "predict", "small", "tabular", "all",
                            *TABULAR],
                   help="small: the iris and digits MLPClassifier fits; tabular: every "
                        "synthetic tabular shape (all: MNIST and small, not tabular)")
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per system (median)")
    p.add_argument("--threads", type=int, default=None, help="fastnn/Numba threads")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--only", nargs="+", default=None, metavar="SYSTEM",
                   choices=SYSTEM_KEYS,
                   help="systems to run: " + " ".join(SYSTEM_KEYS))
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--same-process", action="store_true",
                   help="run every system in this process (default: a fresh process each)")
    p.add_argument("--no-startup", action="store_true",
                   help="skip the start-up lines (a cold first fit: ~30-45 s)")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be >= 1")
    status = rerun_for_isa(args.isa, [sys.executable, "-m", "fastnn.integrations.benchmark"]
                           + list(sys.argv[1:] if argv is None else argv))
    if status is not None:
        return status
    groups = {"all": ("classic", "wide", "predict") + SMALL, "small": SMALL,
              "tabular": tuple(TABULAR)}
    wls = [w for name in args.workload for w in groups.get(name, (name,))]
    if args.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    res = run(wls, args.epochs, args.threads, args.dtype, args.only,
              isolate=not args.same_process, with_startup=not args.no_startup)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
