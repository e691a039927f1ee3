"""The thread chooser (fastnn/runtime/threads.py): runs on the faster of the pool
and one thread, switches when the CPU becomes shared and back when it is
free again; switching never changes the results."""
import numpy as np
import pytest

import fastnn
from fastnn.runtime import threads


@pytest.fixture
def chooser(monkeypatch):
    c = threads.ThreadChooser()
    monkeypatch.setattr(threads, "ENABLED", True)
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 2)
    clock = [100.0]
    monkeypatch.setattr(threads.time, "perf_counter", lambda: clock[0])
    c.clock = clock
    return c


def test_alone_the_pool_wins_and_one_thread_is_probed_rarely(chooser):
    assert chooser.pick() == (2, 1)              # one thread not measured yet
    chooser.record(1, 100, 250e-6, probe=True)   # 2.5 us/row
    chooser.record(2, 300, 570e-6)               # 1.9 us/row
    assert chooser.pick() == (2, None)
    chooser.clock[0] += threads.SERIAL_PROBE
    assert chooser.pick() == (2, 1)


def test_a_shared_cpu_switches_to_one_thread_and_back_when_free(chooser):
    chooser.record(1, 100, 250e-6, probe=True)
    chooser.record(2, 300, 570e-6)
    chooser.record(2, 300, 300 * 300e-6)         # another process took a core: 150x
    assert chooser.pick() == (1, None)
    chooser.clock[0] += threads.FIRST_PROBE
    assert chooser.pick() == (1, 2)              # re-try the pool
    chooser.record(2, 300, 300 * 300e-6, probe=True)
    assert chooser.current == 1 and chooser.interval == 2 * threads.FIRST_PROBE
    chooser.clock[0] += chooser.interval
    chooser.record(2, 300, 570e-6, probe=True)   # the other process is gone
    assert chooser.current == 2 and chooser.interval == threads.FIRST_PROBE


def test_switching_thread_counts_mid_fit_gives_identical_results(rng, monkeypatch):
    x = rng.random((600, 30)).astype(np.float32)
    x[rng.random(x.shape) < 0.7] = 0
    y = rng.integers(0, 4, 600)
    a = fastnn.Network([30, 64, 16, 4], seed=3)
    monkeypatch.setattr(threads, "ENABLED", False)
    a.fit(x, y, epochs=2, batch_size=16)

    class Alternate(threads.ThreadChooser):
        n = 0

        def pick(self):
            self.n += 1
            return (1 if self.n % 2 else threads.numba.get_num_threads()), None

    monkeypatch.setattr(threads, "chooser_for", lambda work: Alternate())
    b = fastnn.Network([30, 64, 16, 4], seed=3)
    b.fit(x, y, epochs=2, batch_size=16)
    np.testing.assert_array_equal(a.theta, b.theta)


def test_the_one_thread_probe_spans_half_a_chunk(rng, monkeypatch):
    # Each compiled call pays a fixed ~0.1 ms; a one-batch probe of small
    # batches counted it as the thread's, so the pool kept running though
    # it was slower.
    x = rng.random((6400, 12)).astype(np.float32)
    y = rng.integers(0, 3, 6400)
    seen = []

    class Probing(threads.ThreadChooser):
        def pick(self):
            return threads.numba.get_num_threads(), 1

        def record(self, threads_, rows, seconds, probe=False):
            seen.append((threads_, rows, probe))

    monkeypatch.setattr(threads, "ENABLED", True)
    monkeypatch.setattr(threads, "chooser_for", lambda work: Probing())
    fastnn.Network([12, 16, 3], seed=1).fit(x, y, epochs=1, batch_size=16, shuffle=False)
    chunk = -(-6400 // 16 // 64) * 16        # rows of a chunk (64 an epoch) but the last
    probes = [rows for t, rows, probe in seen[:-2] if t == 1 and probe]
    assert probes and min(probes) >= chunk // 2 - 16 and max(probes) <= chunk // 2 + 16


def test_a_fits_scan_of_its_data_runs_on_the_thread_count_training_chose(rng, monkeypatch):
    # The scan is a parallel region: beside a CPU hog its join waited a
    # time slice for the thread kept off its core (20k MNIST rows: 8 ms on
    # the pool, 3 ms on one thread).
    from fastnn.engine import validation
    from fastnn.kernels import sparse

    x = rng.random((validation.NUMPY_SCAN_MAX // 40 + 1, 40)).astype(np.float32)
    y = rng.integers(0, 3, x.shape[0])
    calls = []
    run_with = threads.run_with

    def recording(n, fn, *args):
        calls.append((n, fn))
        return run_with(n, fn, *args)

    monkeypatch.setattr(threads, "run_with", recording)
    monkeypatch.setattr(threads, "preferred", lambda: 1)
    fastnn.Network([40, 8, 3], seed=1).fit(x, y, epochs=1, batch_size=4096)
    assert (1, sparse.scan_rows) in calls


def test_no_parallel_kernel_starts_inside_a_prange_body():
    """A ``jit_parallel`` kernel called from inside a ``prange`` body starts
    a nested thread team on every call (~1 ms each: a 16-row batch of
    28-256-256-2 ran 8x slower on two threads than on one). Walks the
    kernels' source: every function that is parallel or calls one,
    transitively, must stay out of ``prange`` loops."""
    import ast
    from pathlib import Path

    import fastnn.kernels
    funcs = {}
    for path in Path(fastnn.kernels.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                parallel = any("parallel" in ast.unparse(d) for d in node.decorator_list)
                funcs.setdefault(node.name, (path.name, node, parallel))

    def called(node):
        return {c.func.id if isinstance(c.func, ast.Name) else c.func.attr
                for c in ast.walk(node)
                if isinstance(c, ast.Call) and isinstance(c.func, (ast.Name, ast.Attribute))}

    parallel = {name for name, (_, _, p) in funcs.items() if p}
    assert {"_transpose_parallel", "split_run"} <= parallel
    grown = True
    while grown:
        grown = False
        for name, (_, node, _) in funcs.items():
            if name not in parallel and called(node) & parallel:
                parallel.add(name)
                grown = True
    nested = []
    for name, (file, node, _) in funcs.items():
        for loop in ast.walk(node):
            if (isinstance(loop, ast.For) and isinstance(loop.iter, ast.Call)
                    and getattr(loop.iter.func, "id", "") == "prange"):
                inner = set().union(*(called(s) for s in loop.body)) & parallel
                nested += [f"{file}:{name} -> {sorted(inner)}"] if inner else []
    assert not nested, nested
