"""Where a cold start's time goes: Numba's compile time per function.

    python bench/compile_profile.py                  # classic Network fit, empty cache
    python bench/compile_profile.py --scenario iris  # MLPClassifier on iris
    python bench/compile_profile.py --scenario predict  # classic fit, then predict_proba
    python bench/compile_profile.py --scenario all --top 30

Each scenario runs in a fresh process with an empty kernel cache (a new
temporary ``NUMBA_CACHE_DIR``), as a first run after installing does;
The compile runs in the profiled process (``FASTNN_BACKGROUND_COMPILE=0``:
by default a cold fit trains on NumPy while a helper compiles).
``--no-cache`` disables the cache instead (``FASTNN_CACHE=0``), which also
turns off the helper process of a cold fit (see fastnn/runtime/cold_start.py):
the whole compile then runs in the profiled process.
Numba's event API (``numba.core.event``, kind ``numba:compile``) reports the
start and end of each function's compilation; nested compiles (a kernel's
callees) are subtracted to give each function's own ("self") time. The
table lists the top functions by self time, then the process's total.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

SCENARIOS = {
    "classic": """
import numpy as np, fastnn
(x, y), _ = fastnn.load_mnist()
fastnn.Network([784, 100, 50, 10], seed=8).fit(x[:1000], y[:1000], epochs=1)
""",
    "predict": """
import numpy as np, fastnn
(x, y), (xt, yt) = fastnn.load_mnist()
net = fastnn.Network([784, 100, 50, 10], seed=8)
net.fit(x[:1000], y[:1000], epochs=1)
net.predict_proba(xt[:1000])
""",
    "iris": """
from sklearn.datasets import load_iris
import fastnn
X, y = load_iris(return_X_y=True)
fastnn.MLPClassifier(max_iter=50).fit(X, y)
""",
    "adam": """
import numpy as np, fastnn
(x, y), _ = fastnn.load_mnist()
fastnn.Network([784, 100, 50, 10], seed=8).fit(x[:1000], y[:1000], epochs=1, optimizer="adam",
                                                lr=1e-3)
""",
    "float64": """
import numpy as np, fastnn
(x, y), _ = fastnn.load_mnist()
fastnn.Network([784, 100, 50, 10], seed=8, dtype="float64").fit(x[:1000], y[:1000], epochs=1)
""",
}

RECORDER = """
import json, sys, threading, time
from numba.core import event
records, stack = [], []
class Rec(event.Listener):
    def on_start(self, ev):
        stack.append([ev.data["dispatcher"], time.perf_counter(), 0.0])
    def on_end(self, ev):
        disp, t0, child = stack.pop()
        dt = time.perf_counter() - t0
        if stack:
            stack[-1][2] += dt
        name = getattr(disp, "py_func", None)
        name = f"{name.__module__}.{name.__qualname__}" if name else str(disp)
        if "--signatures" in sys.argv:
            name += str(tuple(ev.data["args"]))
        records.append((name, dt, dt - child))
event.register("numba:compile", Rec())
T0 = time.perf_counter()
exec(compile(sys.argv[1], "<scenario>", "exec"))
print("@@" + json.dumps({"records": records, "total": time.perf_counter() - T0}))
"""


def profile(code, signatures=False, cache=True):
    extra = ["--signatures"] if signatures else []
    with tempfile.TemporaryDirectory() as tmp:
        # The compile profiled in this process: no NumPy engine standing in
        # while a helper compiles (the default of a cold fit, fastnn/runtime/cold_start.py).
        env = dict(os.environ, FASTNN_BACKGROUND_COMPILE="0")
        env.update(NUMBA_CACHE_DIR=tmp) if cache else env.update(FASTNN_CACHE="0")
        out = subprocess.run([sys.executable, "-c", RECORDER, code] + extra, env=env,
                             check=True, capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("@@"))
    return json.loads(line[2:])


def table(result, top):
    agg = {}
    for name, incl, self_time in result["records"]:
        a = agg.setdefault(name, [0, 0.0, 0.0])
        a[0] += 1
        a[1] += incl
        a[2] += self_time
    rows = sorted(agg.items(), key=lambda kv: -kv[1][2])
    compiled = sum(v[2] for v in agg.values())
    width = max([64] + [len(name) for name, _ in rows[:top]])
    lines = [f"{'function':{width}s} {'n':>3s} {'self s':>7s} {'incl s':>7s}"]
    for name, (n, incl, self_time) in rows[:top]:
        lines.append(f"{name:{width}s} {n:3d} {self_time:7.2f} {incl:7.2f}")
    lines.append(f"{len(agg)} functions, {sum(v[0] for v in agg.values())} compilations: "
                 f"{compiled:.1f} s compiling of {result['total']:.1f} s from import to end")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=list(SCENARIOS) + ["all"], default="classic")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--signatures", action="store_true",
                   help="one row per (function, argument types)")
    p.add_argument("--no-cache", action="store_true",
                   help="FASTNN_CACHE=0 instead of an empty cache directory")
    args = p.parse_args(argv)
    for name in (SCENARIOS if args.scenario == "all" else [args.scenario]):
        how = "FASTNN_CACHE=0" if args.no_cache else "empty NUMBA_CACHE_DIR"
        print(f"\n== {name} (cold: {how})")
        print(table(profile(SCENARIOS[name], args.signatures, not args.no_cache), args.top),
              flush=True)


if __name__ == "__main__":
    main()
