"""asv benchmarks for fastnn (see docs/performance.md, "Running the benchmarks").

Every class warms up in ``setup`` (Numba compilation, caches, thread pool)
so the timed calls measure steady-state speed.
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

import fastnn
from fastnn.integrations.benchmark import TABULAR, WORKLOADS
from fastnn.kernels import dense, losses, matmul
from fastnn.kernels.bundles import Loss

_MNIST = None


def mnist():
    global _MNIST
    if _MNIST is None:
        _MNIST = fastnn.load_mnist()
    return _MNIST


class TimeEpoch:
    """One epoch of MNIST, fit(epochs=1) per call, no shuffling."""
    params = (["classic", "wide"], ["float32", "float64"])
    param_names = ["workload", "dtype"]
    number = 1
    repeat = (2, 5, 120.0)
    timeout = 900

    def setup(self, workload, dtype):
        (x, y), _ = mnist()
        self.x = x.astype(dtype)
        self.y = y
        spec = WORKLOADS[workload]
        self.net = fastnn.Network(spec["layers"], seed=8, dtype=dtype)
        self.kw = dict(epochs=1, batch_size=spec["batch_size"], lr=spec["lr"], shuffle=False)
        self.net.fit(self.x, self.y, **self.kw)

    def time_epoch(self, workload, dtype):
        self.net.fit(self.x, self.y, **self.kw)


class TimeTabular:
    """One epoch of each tabular shape (synthetic float32 data, as
    ``python bench/compare.py --workload tabular``), fit(epochs=1) per
    call, no shuffling."""
    params = [list(TABULAR)]
    param_names = ["workload"]
    number = 1
    repeat = (2, 5, 120.0)
    timeout = 900

    def setup(self, workload):
        from fastnn.integrations.benchmark import FastnnSystem, tabular_data

        spec = TABULAR[workload]
        x, y = tabular_data(workload)
        self.system = FastnnSystem(x, y, spec["layers"], spec["batch_size"], spec["lr"],
                                   "float32", spec["optimizer"])
        self.system.epoch()

    def time_epoch(self, workload):
        self.system.epoch()


class TrackTabular:
    """Per tabular shape, from one run of the side-by-side benchmark
    (medians of 3 epochs, each system in a process of its own): fastnn's
    GFLOP/s as a share of np.matmul's (512^3, same run), and PyTorch's (1
    and 2 threads) and scikit-learn's time over fastnn's."""
    params = (list(TABULAR), ["share of np.matmul", "PyTorch 1 thread / fastnn",
                              "PyTorch 2 threads / fastnn", "scikit-learn / fastnn"])
    param_names = ["workload", "measure"]
    unit = "ratio"
    number = 1
    repeat = 1
    timeout = 2400

    def setup_cache(self):
        from fastnn.integrations import benchmark

        with open(os.devnull, "w") as out:
            return benchmark.run(tuple(TABULAR), epochs=3, out=out,
                                 systems=["fastnn", "torch", "torch1", "sklearn"])

    def track_ratio(self, result, workload, measure):
        from fastnn.integrations import benchmark

        rows = {r["system"]: r for r in result["workloads"][workload]["results"]}
        if measure == "share of np.matmul":
            return rows[benchmark.FastnnSystem.name]["share_of_matmul_peak"]
        name = {"PyTorch 1 thread / fastnn": benchmark.Torch1System.name,
                "PyTorch 2 threads / fastnn": benchmark.TorchSystem.name,
                "scikit-learn / fastnn": benchmark.SklearnSystem.name}[measure]
        if name not in rows:
            raise NotImplementedError(f"{name}: {result['skipped'].get(name, 'not run')}")
        return rows[name]["vs_fastnn"]


class TimeEpochOptions:
    """The classic float32 MNIST epoch with each optimizer, with
    class_weight="balanced" (sample weights), dropout 0.2, clip_norm,
    label smoothing, and GELU / SiLU hidden layers; "sgd" is the baseline
    run in the same report."""
    params = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "sgd+class_weight",
              "sgd+dropout", "sgd+clip_norm", "sgd+label_smoothing", "sgd+gelu", "sgd+silu"]
    param_names = ["option"]
    number = 1
    repeat = (2, 5, 120.0)
    timeout = 900

    def setup(self, option):
        (x, y), _ = mnist()
        self.x, self.y = x, y
        spec = WORKLOADS["classic"]
        extra = option.split("+")[1] if "+" in option else ""
        self.net = fastnn.Network(spec["layers"], seed=8,
                                  hidden=extra if extra in ("gelu", "silu") else "relu",
                                  label_smoothing=0.1 if extra == "label_smoothing" else 0.0)
        optimizer = option.split("+")[0]
        self.kw = dict(epochs=1, batch_size=spec["batch_size"], shuffle=False,
                       optimizer=optimizer, lr=spec["lr"] if optimizer == "sgd" else 1e-3)
        if option.endswith("class_weight"):
            self.kw["class_weight"] = "balanced"
        if option.endswith("dropout"):
            self.kw["dropout"] = 0.2
        if option.endswith("clip_norm"):
            self.kw["clip_norm"] = 1.0
        self.net.fit(self.x, self.y, **self.kw)

    def time_epoch(self, option):
        self.net.fit(self.x, self.y, **self.kw)


class TimeMatmul:
    """The tiled matmul in the three orientations training needs."""
    params = (["classic", "512"], ["float32", "float64"])
    param_names = ["shape", "dtype"]

    def setup(self, shape, dtype):
        M, K, N = (100, 784, 100) if shape == "classic" else (512, 512, 512)
        rng = np.random.default_rng(0)
        self.A = rng.random((M, K), dtype=dtype)
        self.B = rng.random((K, N), dtype=dtype)
        self.C = np.empty((M, N), dtype)
        self.X = rng.random((M, K), dtype=dtype)
        self.dU = rng.random((M, N), dtype=dtype)
        self.dW = np.empty((K, N), dtype)
        self.dX = np.empty((M, K), dtype)
        self.BT = np.empty((N, K), dtype)
        self.time_nn(shape, dtype)
        self.time_tn(shape, dtype)
        self.time_nt(shape, dtype)

    def time_nn(self, shape, dtype):
        matmul.gemm_nn(self.A, self.B, self.C)

    def time_tn(self, shape, dtype):
        matmul.gemm_tn(self.X, self.dU, self.dW)

    def time_nt(self, shape, dtype):
        matmul.gemm_nt(self.dU, self.B, self.dX, self.BT)

    def time_numpy_matmul(self, shape, dtype):
        np.matmul(self.A, self.B, out=self.C)


class TrackMatmulGflops:
    """GFLOP/s of gemm_nn and of np.matmul (median of 20 calls), float32."""
    params = ["classic", "512", "wide"]
    param_names = ["shape"]
    unit = "GFLOP/s"
    SHAPES = {"classic": (100, 784, 100), "512": (512, 512, 512),
              "wide": (256, 1024, 1024)}  # the wide workload's hidden layer

    def _gflops(self, shape, fn):
        import time
        M, K, N = self.SHAPES[shape]
        rng = np.random.default_rng(0)
        A = rng.random((M, K), dtype=np.float32)
        B = rng.random((K, N), dtype=np.float32)
        C = np.empty((M, N), np.float32)
        fn(A, B, C)
        ts = []
        for _ in range(20):
            t = time.perf_counter()
            fn(A, B, C)
            ts.append(time.perf_counter() - t)
        return 2 * M * K * N / np.median(ts) / 1e9

    def track_fastnn_gflops(self, shape):
        return self._gflops(shape, matmul.gemm_nn)

    def track_numpy_gflops(self, shape):
        return self._gflops(shape, lambda A, B, C: np.matmul(A, B, out=C))


class TimeLayers:
    """Fused dense forward/backward and the softmax-CE head (classic layer 1)."""
    params = ["float32", "float64"]
    param_names = ["dtype"]

    def setup(self, dtype):
        rng = np.random.default_rng(0)
        self.X = rng.random((100, 784), dtype=dtype)
        self.W = rng.random((784, 100), dtype=dtype) - 0.5
        self.b = np.zeros(100, dtype)
        self.Y = np.empty((100, 100), dtype)
        self.dU = rng.random((100, 100), dtype=dtype)
        self.dW = np.empty_like(self.W)
        self.db = np.empty_like(self.b)
        self.dX = np.empty_like(self.X)
        self.WT = np.empty((100, 784), dtype)
        self.Z = rng.standard_normal((100, 10)).astype(dtype)
        self.labels = rng.integers(0, 10, 100)
        self.T = np.zeros((0, 10), dtype)
        self.dZ = np.empty_like(self.Z)
        self.w = np.empty(0, np.float64)  # no sample weights
        self.head = Loss(losses.SOFTMAX_CE, 1.0, 0.0)
        self.bp = np.empty(0, dtype)  # packing scratch (unused at these widths)
        self.time_dense_forward(dtype)
        self.time_dense_backward(dtype)
        self.time_softmax_ce(dtype)

    def time_dense_forward(self, dtype):
        dense.dense_forward(self.X, self.W, self.b, 1, self.Y, self.bp)

    def time_dense_backward(self, dtype):
        dense.dense_backward(self.dU, self.X, self.W, self.dW, self.db, self.dX, self.WT, 1,
                             self.bp)

    def time_softmax_ce(self, dtype):
        losses.loss_forward_backward(self.head, self.Z, self.labels, self.T, self.w, self.dZ)


class TimePredict:
    """Class probabilities of the 10,000 MNIST test images (classic network):
    fastnn's predict_proba, its NumPy reference forward, PyTorch
    (inference_mode) and onnxruntime when installed: the systems of
    ``python bench/compare.py --workload predict``, in one process."""
    params = ["fastnn", "reference", "torch", "onnxruntime"]
    param_names = ["system"]

    def setup(self, system):
        from fastnn.integrations.benchmark import PREDICTORS

        _, (xt, _) = mnist()
        cls = {c.key: c for c in PREDICTORS}[system]
        try:
            self.system = cls(np.ascontiguousarray(xt, np.float32),
                              WORKLOADS["predict"]["layers"], "float32")
        except ImportError:
            raise NotImplementedError(f"{system} is not installed")
        for _ in range(5):
            self.system.epoch()

    def time_predict_proba(self, system):
        self.system.epoch()


class TrackAccuracy:
    """Test accuracy after 2 classic epochs (the tutorial's log: 0.9634)."""
    unit = "accuracy"
    number = 1
    repeat = 1
    timeout = 300

    def track_classic_two_epochs(self):
        (x, y), (xt, yt) = mnist()
        net = fastnn.Network(WORKLOADS["classic"]["layers"], seed=8)
        net.fit(x, y, epochs=2, batch_size=100, lr=0.5, shuffle=False)
        return net.evaluate(xt, yt)["accuracy"]


class PeakMemFit:
    """Peak memory of a classic fit on all of MNIST (float32)."""
    timeout = 300

    def setup(self):
        self.data = mnist()[0]

    def peakmem_fit_classic(self):
        x, y = self.data
        fastnn.Network(WORKLOADS["classic"]["layers"], seed=8).fit(
            x, y, epochs=1, batch_size=100, lr=0.5, shuffle=False)


def timeraw_import_and_first_step():
    """Fresh process, warm Numba cache: import plus a first fit step."""
    return """
import numpy as np
import fastnn
rng = np.random.default_rng(0)
x = rng.random((100, 784), dtype=np.float32)
y = rng.integers(0, 10, 100)
fastnn.Network([784, 100, 50, 10], seed=8).fit(x, y, epochs=1, batch_size=100)
"""


COLD_FIT = """
import os, shutil, tempfile
cache = tempfile.mkdtemp()
os.environ["NUMBA_CACHE_DIR"] = cache
os.environ["FASTNN_BACKGROUND_COMPILE"] = "{background}"
import numpy as np
import fastnn
rng = np.random.default_rng(0)
x = rng.random((1000, 784), dtype=np.float32)
x[x < 0.8] = 0  # MNIST-like: mostly zeros (takes the sparse first layer, as MNIST does)
y = rng.integers(0, 10, 1000)
fastnn.Network([784, 100, 50, 10], seed=8).fit(x, y, epochs=1, verbose=False)
shutil.rmtree(cache)
"""


def timeraw_cold_first_fit():
    """Fresh process, EMPTY kernel cache (a first run after installing):
    import plus a one-epoch classic fit on 1000 rows, every kernel it needs
    compiled in this process (on two cores: see fastnn/runtime/cold_start.py).
    The default cold fit runs on NumPy while a helper compiles (fit end in
    ~2 s: ``bench/compare.py``'s start-up lines); this tracks the compile."""
    return COLD_FIT.format(background="0")


timeraw_cold_first_fit.number = 1
timeraw_cold_first_fit.repeat = (1, 3, 240.0)
timeraw_cold_first_fit.timeout = 600


def _bench_script(name):
    """A script of bench/ as a module (asv imports this file alone)."""
    path = Path(__file__).resolve().parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"fastnn_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TimeSmallData:
    """``MLPClassifier(hidden_layer_sizes=(50,), max_iter=200).fit`` on
    iris and digits (float64, as loaded), fastnn and scikit-learn."""
    params = (["iris", "digits"], ["fastnn", "sklearn"])
    param_names = ["dataset", "system"]
    timeout = 300

    def setup(self, dataset, system):
        try:
            from sklearn import datasets, neural_network
        except ImportError:
            raise NotImplementedError("scikit-learn is not installed")
        self.X, self.y = getattr(datasets, f"load_{dataset}")(return_X_y=True)
        self.cls = fastnn.MLPClassifier if system == "fastnn" else neural_network.MLPClassifier
        self.time_fit(dataset, system)  # compile / warm up

    def time_fit(self, dataset, system):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning
            self.cls(hidden_layer_sizes=(50,), max_iter=200, random_state=0).fit(self.X, self.y)


class TrackSharedCPU:
    """Classic epochs on 20k rows when the CPU is shared (bench/shared_cpu.py):
    two processes at once (the slower one) and one beside a CPU hog, each
    over the lone run measured in the same benchmark (1.0 = no slowdown)."""
    params = ["two at once", "beside a CPU hog"]
    param_names = ["scenario"]
    unit = "x alone"
    number = 1
    repeat = 1
    timeout = 600

    def track_slowdown(self, scenario):
        shared = _bench_script("shared_cpu")
        env = dict(os.environ)
        lone = shared.run(1, 4, env)[0]
        if scenario == "two at once":
            return max(shared.run(2, 4, env)) / lone
        return shared.run(1, 4, env, hog=True)[0] / lone


class TrackMatmulAVX2:
    """The tiled matmul over np.matmul on AVX2 code, float32, 2 threads:
    both built for AVX2 on any AVX2 host (AVX-512 ones too:
    ``python bench/gemm_isa.py --isa avx2``, in a subprocess)."""
    params = (["100x784x100", "256x1024x1024", "512^3"], ["nn", "tn", "nt"])
    param_names = ["shape", "op"]
    unit = "x np.matmul"
    timeout = 900

    def setup_cache(self):
        out = os.path.join(tempfile.mkdtemp(), "gemm.json")
        script = Path(__file__).resolve().parent / "gemm_isa.py"
        status = subprocess.call([sys.executable, str(script), "--isa", "avx2", "--json", out],
                                 stdout=subprocess.DEVNULL)
        if status != 0 or not os.path.exists(out):
            return None  # no AVX2 on this CPU
        with open(out) as f:
            return json.load(f)

    def track_ratio(self, results, shape, op):
        if results is None:
            raise NotImplementedError("this CPU has no AVX2")
        return results["gflops"][f"{shape} {op}"]["ratio"]
