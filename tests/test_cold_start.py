"""The cold first fit's helper process (fastnn/runtime/cold_start.py).

Its benefit depends on one prediction: the argument types that
``train_batches`` calls the forward, backward and update drivers with. A
wrong guess is not an error (this process compiles what is missing), only a
lost speed-up, so it is checked here directly: after a fit, each predicted
signature must be one the drivers were compiled for.
"""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import early, early_env, early_tmp

import fastnn
from fastnn.runtime import cold_start
from fastnn.kernels import train as K


# Read-only inputs reach the drivers as writable views (validation.kernel_array):
# the same signatures; float32 only, the prediction does not depend on the dtype.
@pytest.mark.parametrize("dtype,read_only", [("float32", False), ("float64", False),
                                             ("float32", True)])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_predicted_signatures_are_the_ones_training_compiles(monkeypatch, dtype, sparse,
                                                             shuffle, read_only):
    seen = []
    original = cold_start.assist
    monkeypatch.setattr(cold_start, "assist",
                        lambda trainer, opt, state: seen.append(
                            cold_start.signatures(trainer, opt, state)) or original(
                                trainer, opt, state))
    rng = np.random.default_rng(0)
    x = rng.random((60, 9)).astype(dtype)
    if sparse:
        x[rng.random(x.shape) < 0.9] = 0
    if read_only:
        x.setflags(write=False)
    y = rng.integers(0, 3, 60)
    net = fastnn.Network([9, 7, 3], seed=0, dtype=dtype)
    net.fit(x, y, epochs=1, batch_size=16, shuffle=shuffle)
    (sigs,) = seen
    for name, sig in sigs.items():
        assert compiled_or_cached(getattr(K, name), sig), (name, sig)


def compiled_or_cached(disp, sig):
    """Compiled here, or in the disk cache (e.g. loaded with a caller: then
    only the index knows the callee's signatures); strict, unlike
    cold_start.is_cached, which answers True when it cannot tell."""
    cache = disp._cache
    return (sig in disp.overloads
            or cache._index_key(sig, disp.targetctx.codegen()) in cache._cache_file._load_index())


def test_no_helper_without_a_cache_or_when_disabled(monkeypatch):
    monkeypatch.setenv("FASTNN_COLD_ASSIST", "0")
    assert not cold_start._enabled()
    monkeypatch.delenv("FASTNN_COLD_ASSIST")
    monkeypatch.setattr(cold_start._config, "CACHE", False)
    assert not cold_start._enabled()


# A subprocess's first fit: records the functions compiled in it.
FIRST_FIT = r"""
import sys, numpy as np
from numba.core import event
compiled = []
class Rec(event.Listener):
    def on_start(self, ev):
        compiled.append(getattr(ev.data["dispatcher"], "py_func", None).__name__)
    def on_end(self, ev):
        pass
event.register("numba:compile", Rec())
import fastnn
from fastnn.runtime import cold_start
rng = np.random.default_rng(0)
x = rng.random((64, 5)).astype(np.float32)
y = rng.integers(0, 3, 64)
net = fastnn.Network([5, 8, 3], seed=0)
h = net.fit(x, y, epochs=2, batch_size=16, verbose=False)
"""
COLD = FIRST_FIT + r"""
print(repr((h["loss"], sorted(set(compiled)))))
"""


@early("test_a_cold_fit_takes_the_backward_from_the_helper_and_trains_the_same", seconds=120)
def _cold_fit():
    # An empty cache of its own: everything compiles, in two processes.
    env = early_env(NUMBA_CACHE_DIR=early_tmp("cold-"))
    return subprocess.run([sys.executable, "-c", COLD], env=env, capture_output=True,
                          text=True, timeout=900)


def test_a_cold_fit_takes_the_backward_from_the_helper_and_trains_the_same():
    """Empty cache: the helper's share (the forward pass) is compiled by the
    helper (this process loads it from the cache), this process compiles
    its own share, and the fit's result equals an in-process one."""
    out = _cold_fit.result()
    assert out.returncode == 0, out.stderr[-2000:]
    loss, compiled_here = eval(out.stdout.strip().splitlines()[-1])
    assert not set(cold_start.HELPER) & set(compiled_here), compiled_here
    assert set(cold_start.MAIN) <= set(compiled_here)
    rng = np.random.default_rng(0)
    x = rng.random((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    h = fastnn.Network([5, 8, 3], seed=0).fit(x, y, epochs=2, batch_size=16, verbose=False)
    np.testing.assert_allclose(loss, h["loss"], rtol=1e-6)


def test_the_helper_rejects_a_malformed_request(tmp_path):
    proc = subprocess.run(cold_start.helper_command(), input=b"not a pickle",
                          capture_output=True, timeout=300,
                          env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path)))
    assert proc.returncode != 0


BACKGROUND = FIRST_FIT + r"""
p = net.predict_proba(x)
helpers = set(cold_start._asked.values())
for helper in helpers:  # what they compile is tested below, with a small kernel
    helper.kill()
print(repr((h["loss"], p.sum(axis=0).tolist(), sorted(set(compiled)), len(helpers))))
"""


def test_a_cold_fit_runs_on_numpy_at_once_while_a_helper_compiles(tmp_path):
    """Empty cache, background compile on (the default): the fit and the
    predict run on the NumPy engine at once (nothing of fastnn compiled in
    this process, one helper started for each), the notice says so, and the
    results equal a compiled fit's to rounding."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), FASTNN_BACKGROUND_COMPILE="1")
    out = subprocess.run([sys.executable, "-c", BACKGROUND], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    loss, psum, compiled_here, n_helpers = eval(out.stdout.strip().splitlines()[-1])
    assert compiled_here == [] and n_helpers == 1, (compiled_here, n_helpers)
    assert "in the background" in out.stderr
    rng = np.random.default_rng(0)
    x = rng.random((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    net = fastnn.Network([5, 8, 3], seed=0)
    h = net.fit(x, y, epochs=2, batch_size=16, verbose=False)
    np.testing.assert_allclose(loss, h["loss"], rtol=1e-5)
    np.testing.assert_allclose(psum, net.predict_proba(x).sum(axis=0), rtol=1e-5)


def test_a_background_helper_leaves_the_kernels_in_the_cache(tmp_path):
    """The helper itself (a small kernel stands in for the drivers): what it
    is asked for is in the cache afterwards, and a second helper asked for
    the same waits for the first and loads it."""
    from numba import typeof

    from fastnn.kernels import sparse

    rowhash = np.arange(5, dtype=np.uint64)
    sig = (typeof(rowhash),)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), FASTNN_BACKGROUND_COMPILE="1")
    payload = pickle.dumps({"background": [("sparse.fingerprint", sig)]})
    procs = [subprocess.Popen(cold_start.helper_command(), stdin=subprocess.PIPE, env=env)
             for _ in range(2)]
    for p in procs:
        p.communicate(payload, timeout=300)
        assert p.returncode == 0
    check = ("import numpy as np; from numba import typeof; from fastnn.runtime import cold_start; "
             "from fastnn.kernels import sparse; "
             "d = sparse.fingerprint; s = (typeof(np.arange(5, dtype=np.uint64)),); "
             "print(d._cache._index_key(s, d.targetctx.codegen()) "
             "in d._cache._cache_file._load_index())")
    # Run from another directory, as the helper may be: the same cache.
    out = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.stdout.strip() == "True", out.stderr[-2000:]
    assert list(tmp_path.rglob("fastnn-compile.lock"))
    assert sparse.fingerprint(rowhash) == sparse.fingerprint(rowhash.copy())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sparse", [False, True])
def test_a_background_compile_predicts_the_calls_after_training(dtype, sparse):
    """The signatures the helper compiles after training's (validation and
    predict on dense rows) are the ones those calls then use."""
    rng = np.random.default_rng(0)
    x = rng.random((60, 9)).astype(dtype)
    if sparse:
        x[rng.random(x.shape) < 0.9] = 0
    y = rng.integers(0, 3, 60)
    net = fastnn.Network([9, 7, 3], seed=0, dtype=dtype)
    X = net._check_x(x)
    trainer = net._trainer(X, *net._check_y(y, 60), 16, True)
    assert trainer.sparse == sparse
    net.fit(x, y, epochs=1, batch_size=16, validation_split=0.3)
    net.predict_proba(x)
    for name, args in trainer._next_calls():
        disp = getattr(K, name)
        sig = tuple(disp.typeof_pyval(a) for a in args)
        assert compiled_or_cached(disp, sig), name


class FakeHelper:
    def __init__(self, code):
        self.returncode = code

    def poll(self):
        return self.returncode


def test_a_failing_helper_is_retried_once_then_this_process_compiles(monkeypatch):
    monkeypatch.setenv("FASTNN_BACKGROUND_COMPILE", "1")
    monkeypatch.setattr(cold_start, "is_cached", lambda disp, sig: False)
    monkeypatch.setattr(cold_start, "_known", set())
    monkeypatch.setattr(cold_start, "_asked", {})
    monkeypatch.setattr(fastnn.runtime.compile_notice, "_background", {})
    monkeypatch.setattr(cold_start, "claim", lambda path: cold_start.NO_LOCK)
    started = []
    monkeypatch.setattr(cold_start, "_start_helper",
                        lambda keys, lock: started.append(keys) or FakeHelper(None))
    # Argument types epoch_begin is never compiled for (int32 row ids).
    args = (np.zeros(4, np.int32), np.zeros(1, np.uint64), True, None, False, 2)
    calls = [("epoch_begin", args)]
    assert not cold_start.ready(calls)  # a helper starts
    assert not cold_start.ready(calls)  # still running
    assert len(started) == 1
    cold_start._asked[started[0][0]].returncode = 1  # it failed: one more try
    assert not cold_start.ready(calls) and len(started) == 2
    cold_start._asked[started[0][0]].returncode = 1  # failed again: compile here
    assert cold_start.ready(calls)
    monkeypatch.setenv("FASTNN_BACKGROUND_COMPILE", "0")
    assert cold_start.ready([("epoch_begin", ("not", "typed"))])


# ------------------------------------------------- one helper per cache, machine-wide
def unknown_calls():
    """Argument types epoch_begin is never compiled for (int32 row ids)."""
    args = (np.zeros(4, np.int32), np.zeros(1, np.uint64), True, None, False, 2)
    return [("epoch_begin", args)]


@pytest.fixture
def cold(monkeypatch, tmp_path):
    """ready() as on a cold cache in tmp_path, helpers recorded, not run."""
    monkeypatch.setenv("FASTNN_BACKGROUND_COMPILE", "1")
    monkeypatch.setattr(cold_start, "is_cached", lambda disp, sig: False)
    monkeypatch.setattr(cold_start, "_known", set())
    monkeypatch.setattr(cold_start, "_asked", {})
    monkeypatch.setattr(cold_start, "_others", set())
    monkeypatch.setattr(cold_start, "cache_dir", lambda: str(tmp_path / "not" / "yet"))
    monkeypatch.setattr(fastnn.runtime.compile_notice, "_background", {})
    monkeypatch.setattr(fastnn.runtime.kernel_cache, "write_errors", [])
    started = []

    def start(keys, lock):
        started.append(lock)  # ready() closes it: as if the helper ended
        return FakeHelper(None)

    monkeypatch.setattr(cold_start, "_start_helper", start)
    return started


@pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows")
def test_a_process_that_finds_a_helper_at_work_starts_none(cold, tmp_path):
    """The lock is taken even where the cache directory does not exist yet
    (the first helper of an empty cache took none, and two compiled the same
    kernels), and held by someone else it means: do not start another."""
    held = cold_start.claim(str(tmp_path / "not" / "yet"))
    assert held is not None and held != cold_start.NO_LOCK
    try:
        assert not cold_start.ready(unknown_calls())  # NumPy meanwhile
        assert not cold_start.ready(unknown_calls())
        assert cold == []
    finally:
        os.close(held)
    assert not cold_start.ready(unknown_calls())
    assert len(cold) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows")
def test_wait_waits_for_another_processes_helper(cold, tmp_path):
    """A process that found another's helper at work (and so runs on NumPy)
    can wait for that helper too: wait() returns once the lock is free, and
    says False while it is not."""
    import threading

    held = cold_start.claim(str(tmp_path / "not" / "yet"))
    assert not cold_start.ready(unknown_calls())
    assert cold == [] and cold_start._asked == {}
    assert cold_start.wait(timeout=0.3) is False
    threading.Timer(0.5, os.close, (held,)).start()
    assert cold_start.wait(timeout=60) is True
    assert cold_start._others == set()
    assert cold_start.wait(timeout=0) is True


@pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows")
def test_a_started_helper_holds_the_lock_until_it_exits(tmp_path):
    """The parent takes the lock and the helper inherits it: no moment in
    which a second process could start a second helper."""
    from numba import typeof

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    script = ("import os, sys, numpy as np; from numba import typeof\n"
              "from fastnn.runtime import cold_start\n"
              "path = cold_start.cache_dir()\n"
              "lock = cold_start.claim(path)\n"
              "h = cold_start._start_helper([('sparse.fingerprint', "
              "(typeof(np.arange(5, dtype=np.uint64)),))], lock)\n"
              "os.close(lock)\n"
              "print(cold_start.claim(path) is None, flush=True)\n"
              "h.wait()\n"
              "print(h.returncode, cold_start.claim(path) is not None)\n")
    out = subprocess.run(cold_start.python_c(script), env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.stdout.split() == ["True", "0", "True"], out.stderr[-2000:]
    del typeof


def small_tmpfs(path, size, *options):
    """A tmpfs of ``size`` mounted at ``path`` (root on Linux), or skip."""
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    opts = ",".join((f"size={size}",) + options)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    return path


@pytest.fixture
def mounts():
    made = []
    yield made
    for path in made:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


COLD_CALL = r"""
import warnings, numpy as np
from fastnn.runtime import cold_start
warnings.simplefilter("always")
rowhash = np.arange(5, dtype=np.uint64)
calls = [("sparse.fingerprint", (rowhash,))]  # a small kernel stands in for the drivers
with warnings.catch_warnings(record=True) as caught:
    here = [cold_start.ready(calls) for _ in range(3)]
    value = cold_start.kernel("sparse.fingerprint")(rowhash)
said = [str(w.message) for w in caught if "kernel cache" in str(w.message)]
print(repr((here, len(cold_start._asked), said, int(value))))
"""


@pytest.mark.parametrize("disk", ["full", "read-only"])
def test_a_cache_that_cannot_take_kernels_never_fails_the_work(tmp_path, mounts, disk):
    """A cache on a full (a 4 KB tmpfs) or read-only disk: no helper is
    started, the work compiles and runs here, and it is said once."""
    cache = small_tmpfs(tmp_path / "cache", "4k", *(("ro",) if disk == "read-only" else ()))
    mounts.append(cache)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), FASTNN_BACKGROUND_COMPILE="1")
    out = subprocess.run(cold_start.python_c(COLD_CALL), env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    here, helpers, said, value = eval(out.stdout.strip().splitlines()[-1])
    assert here == [True] * 3 and helpers == 0 and len(said) == 1, (here, helpers, said)
    assert str(cache) in said[0] and "cannot write the kernel cache" in said[0]
    from fastnn.kernels import sparse
    assert value == sparse.fingerprint(np.arange(5, dtype=np.uint64))


def test_a_full_disk_fails_no_save_of_a_kernel(tmp_path, mounts):
    """Compiling in-process onto a full cache disk (the save raised ENOSPC
    out of the fit): one warning, the kernel runs."""
    cache = small_tmpfs(tmp_path / "cache", "4k")
    mounts.append(cache)
    (cache / "filler").write_bytes(b"x" * 4096)
    script = ("import warnings, numpy as np; warnings.simplefilter('always')\n"
              "from fastnn.kernels import sparse\n"
              "with warnings.catch_warnings(record=True) as w:\n"
              "    a = sparse.fingerprint(np.arange(5, dtype=np.uint64))\n"
              "    b = sparse.fingerprint(np.arange(5, dtype=np.uint64))\n"
              "print(a == b, sum('cannot write the kernel cache' in str(x.message) for x in w))")
    out = subprocess.run(cold_start.python_c(script), capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, NUMBA_CACHE_DIR=str(cache)))
    assert out.stdout.split() == ["True", "1"], out.stderr[-2000:]


def test_a_helper_that_cannot_write_exits_at_once_and_says_why(tmp_path, mounts):
    from numba import typeof

    cache = small_tmpfs(tmp_path / "cache", "4k")
    mounts.append(cache)
    job = pickle.dumps({"background": [("sparse.fingerprint",
                                        (typeof(np.arange(5, dtype=np.uint64)),))]})
    out = subprocess.run(cold_start.helper_command(), input=job, capture_output=True,
                         timeout=300, env=dict(os.environ, NUMBA_CACHE_DIR=str(cache)))
    assert out.returncode == cold_start.CANNOT_WRITE
    assert b"MB free" in out.stdout
