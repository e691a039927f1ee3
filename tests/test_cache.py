"""Kernels loaded back from Numba's on-disk cache behave like fresh ones.

Two bugs of this kind have bitten: a cached kernel calling a parallel one
before the thread pool was up ("Symbol not found: allocate_sched"), and a
recursive call cycle whose cached code segfaulted. Each run below is a new
process, so the second one (at least) loads every kernel from the cache.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = r"""
import numpy as np, fastnn
rng = np.random.default_rng(0)
out = []
for layers, hidden, output, dtype, zeros in [
        ([20, 64, 5], "relu", "softmax", "float32", 0.0),
        ([30, 100, 50, 10], "tanh", "softmax", "float64", 0.8),
        ([7, 49, 3], "sigmoid", "sigmoid", "float32", 0.0),
        ([5, 3, 2], "identity", "identity", "float64", 0.0)]:
    x = rng.random((150, layers[0]))
    x[rng.random(x.shape) < zeros] = 0
    net = fastnn.Network(layers, hidden=hidden, output=output, seed=1, dtype=dtype)
    if output == "softmax":
        y = rng.integers(0, layers[-1], 150)
    else:
        y = rng.integers(0, 2, (150, layers[-1])).astype(float)
    h = net.fit(x, y, epochs=2, batch_size=32, lr=0.1, shuffle=True)
    out += h["loss"] + net.predict_proba(x[:3]).ravel().tolist()
print(repr(out))
"""


def test_cached_kernels_run_and_agree_with_fresh_ones():
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                           timeout=600) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    a, b = (np.array(eval(r.stdout)) for r in runs)
    assert a.shape == b.shape == (8 + 3 * (5 + 10 + 3 + 2),)
    # Equal up to rounding: a fresh compile may pick a different (1-ulp)
    # transcendental implementation than the cached machine code.
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)


def test_cache_stamp_depends_on_the_parallel_setting():
    """FASTNN_PARALLEL=0 must not load machine code compiled in parallel."""
    code = "from fastnn import _config; print(_config.kernel_source_stamp())"
    stamps = set()
    for parallel in ("0", "1"):
        env = dict(os.environ, FASTNN_PARALLEL=parallel)
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        stamps.add(out)
    assert len(stamps) == 2


# ---------------------------------------------------------------- locations
# A few small kernels (compiled in seconds): the input scan and fingerprint.
SMALL = r"""
import numpy as np
import pytest
from pathlib import Path
from fastnn.kernels import sparse
x = np.arange(12.0).reshape(3, 4)
counts = np.empty(3, np.int64)
h = np.empty(3, np.uint64)
print(sparse.scan_rows(x, counts, h), counts.tolist(), int(sparse.fingerprint(h)))
"""


def _run(env, code=SMALL, cwd=None):
    r = subprocess.run([sys.executable, "-c", code], env=dict(env, NUMBA_DEBUG_CACHE="1"),
                       capture_output=True, text=True, timeout=900, cwd=cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    loaded = sum("data loaded from" in l for l in lines)
    saved = sum("data saved to" in l for l in lines)
    result = [l for l in lines if not l.startswith("[cache]")]
    return result, loaded, saved, r.stderr


def test_numba_cache_dir_is_honoured_and_reused(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    first, loaded, saved, _ = _run(env)
    assert saved > 0 and list(tmp_path.rglob("*.nbi"))
    second, loaded, saved, err = _run(env)
    assert second == first and loaded > 0 and saved == 0
    assert "compiling" not in err  # warm: no compile notice


def test_other_settings_keep_their_kernels_beside_these(tmp_path):
    """Processes with other code-changing settings (FASTNN_PARALLEL=0 here;
    another CPU model sharing a home directory) share the cache directory
    without evicting each other's kernels: each setting compiles once."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    serial, parallel = dict(env, FASTNN_PARALLEL="0"), dict(env, FASTNN_PARALLEL="1")
    out0, _, saved0, _ = _run(serial)
    out1, _, saved1, _ = _run(parallel)
    assert saved0 > 0 and saved1 > 0 and out0 == out1
    for settings in (serial, parallel):
        out, loaded, saved, _ = _run(settings)
        assert out == out0 and loaded > 0 and saved == 0


def test_a_damaged_cache_is_recompiled_with_one_warning(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    good, _, _, _ = _run(env)
    index = next(p for p in tmp_path.rglob("*fingerprint*.nbi"))
    data = next(p for p in tmp_path.rglob("*scan_rows*.nbc"))
    index.write_bytes(index.read_bytes()[:7])              # truncated index
    raw = bytearray(data.read_bytes())
    for i in range(len(raw) // 2, len(raw) // 2 + 64):    # flipped bytes in machine code
        raw[i] ^= 0xFF
    data.write_bytes(bytes(raw))
    out, loaded, saved, err = _run(env)
    assert out == good
    # Reported once. (The recompile's own one-line notice may come too:
    # it shows when compiling takes over compile_notice.DELAY, as it did on
    # a slow 2-core VM beside the rest of the suite.)
    reports = [l for l in err.splitlines() if "fastnn:" in l and "compiling kernels" not in l]
    assert len(reports) == 1 and "recompiling" in err, err
    assert saved >= 2  # both entries rewritten
    out, loaded, saved, err = _run(env)
    assert out == good and saved == 0 and "recompiling" not in err
    index.write_bytes(b"garbage\x00\xff" * 10)             # not a pickle at all
    out, _, _, err = _run(env)
    assert out == good and "recompiling" in err


def test_read_only_install_uses_its_cache_through_a_per_user_copy(tmp_path):
    """The package directory is not writable (a system or Docker install):
    its kernels cached at install time are copied into the user's cache
    once, not compiled again; with no writable home, a per-user temporary
    directory is used. (Tests run as root, for whom no directory is
    read-only: the child process is told the package directory is not
    writable, the one thing a read-only file system changes.)"""
    import shutil

    import fastnn
    site = tmp_path / "site"
    shutil.copytree(os.path.dirname(fastnn.__file__), site / "fastnn",
                    ignore=shutil.ignore_patterns("*.nbi", "*.nbc"))
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("NUMBA_CACHE_DIR", None)
    env.pop("XDG_CACHE_HOME", None)
    good, _, saved, _ = _run(env, cwd=tmp_path)  # fills the package's cache (the install)
    assert saved > 0
    read_only = (f"import fastnn.runtime.kernel_cache as kc\n"
                 f"w = kc._writable\n"
                 f"kc._writable = lambda p: not p.startswith({str(site)!r}) and w(p)\n")
    home = tmp_path / "home"
    home.mkdir()
    out, loaded, saved, err = _run(dict(env, HOME=str(home)), read_only + SMALL, tmp_path)
    assert out == good and loaded > 0 and saved == 0, err[-2000:]
    assert list((home / ".cache" / "fastnn").rglob("*.nbi"))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    no_home = tmp_path / "not-a-directory"  # no writable home, even for root
    no_home.write_text("")
    out, loaded, saved, err = _run(dict(env, HOME=str(no_home), TMPDIR=str(tmp)),
                                   read_only + SMALL, tmp_path)
    assert out == good and loaded > 0 and saved == 0, err[-2000:]
    assert list(tmp.rglob("*.nbi"))


# ----------------------------------------------------------- fastnn compile
def test_compile_from_a_checkout_that_shadows_an_install_finds_the_install(
        tmp_path, monkeypatch):
    """``python -m fastnn compile`` puts the working directory first on the
    path: from a source checkout it would compile the checkout's copy,
    whose cache the installed package never reads."""
    from fastnn.runtime import warmup
    from fastnn.runtime.kernel_cache import PACKAGE_DIR

    checkout = str(PACKAGE_DIR.parent)
    site = tmp_path / "site-packages"
    (site / "fastnn").mkdir(parents=True)
    (site / "fastnn" / "__init__.py").write_text("")
    monkeypatch.setattr(sys, "path", [checkout, str(site)] + sys.path)
    assert warmup.installed_elsewhere() == os.path.realpath(site / "fastnn")
    (tmp_path / "link").symlink_to(checkout)  # an editable install: the same package
    monkeypatch.setattr(sys, "path", [checkout, str(tmp_path / "link"), str(site)])
    assert warmup.installed_elsewhere() is None
    monkeypatch.setattr(sys, "path", [str(tmp_path), str(site)])
    assert warmup.installed_elsewhere() is None  # not started from the checkout


def test_compile_checks_the_cache_from_a_fresh_process_and_names_what_is_missing(tmp_path):
    """The check that ends ``fastnn compile``: a fresh process that finds a
    kernel missing names it (an empty cache: the scan kernels, loaded first,
    are compiled); the work itself is the tiny fit of every kind."""
    script = ("from fastnn.runtime import warmup\n"
              "names = warmup._compiled_here()\n"
              "warmup._in_process()\n"
              "from fastnn.kernels.sparse import fingerprint\n"
              "import numpy as np\n"
              "fingerprint(np.arange(3, dtype=np.uint64))\n"
              "print(names)\n")
    from fastnn.runtime.cold_start import python_c

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run(python_c(script), env=env, capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    assert [r.stdout.strip() for r in runs] == ["['sparse.fingerprint']", "[]"], \
        runs[0].stderr[-2000:]


# ------------------------------------------------------- sharing one cache
def _cache_file(path, monkeypatch):
    """A Numba cache file set in ``path`` with fastnn's checks, as the
    kernels' own are."""
    from numba.core import caching

    import fastnn.runtime.kernel_cache as kc
    kc._check_cache_files(caching.IndexDataCacheFile)
    monkeypatch.setattr(kc, "_our_paths", kc._our_paths | {str(path)})
    return caching.IndexDataCacheFile(str(path), "kernel-1.py311", "stamp")


def test_saves_of_two_signatures_at_once_keep_each_its_own_code(tmp_path, monkeypatch):
    """Two processes compiling one kernel for two signatures (a compile
    helper and a fit) save at once: both entries survive, each naming its
    own file. Unguarded, both picked file number 1 and one signature's
    entry was lost or named the other's code (a later call failed with
    "can't unbox array")."""
    import threading

    import fastnn.runtime.kernel_cache as kc
    first, second = _cache_file(tmp_path, monkeypatch), _cache_file(tmp_path, monkeypatch)
    inside, second_done = threading.Event(), threading.Event()
    dump = first._dump

    def slow_dump(obj):  # the first save pauses inside its critical section
        if not inside.is_set():
            inside.set()
            second_done.wait(1.0)
        return dump(obj)

    first._dump = slow_dump
    key32, key64 = (("float32",), "target"), (("float64",), "target")
    t = threading.Thread(target=first.save, args=(key32, "code for float32"))
    t.start()
    assert inside.wait(10)
    other = threading.Thread(target=lambda: (second.save(key64, "code for float64"),
                                             second_done.set()))
    other.start()
    t.join(10)
    other.join(10)
    reader = _cache_file(tmp_path, monkeypatch)
    assert reader.load(key32) == "code for float32"
    assert reader.load(key64) == "code for float64"
    assert kc.holds(reader, key32) and kc.holds(reader, key64)
    assert len(set(reader._load_index().values())) == 2


def test_an_entry_naming_another_keys_file_is_a_miss_then_mended(tmp_path, monkeypatch):
    """An index left by an unguarded save (or a process with other
    sources saving into the same directory) names a file written for
    another key: loading it misses instead of returning the wrong code,
    and the recompile's save gives the key a file of its own."""
    import fastnn.runtime.kernel_cache as kc
    cache = _cache_file(tmp_path, monkeypatch)
    key32, key64 = (("float32",), "target"), (("float64",), "target")
    cache.save(key64, "code for float64")
    name = cache._load_index()[key64]
    cache._save_index({key64: name, key32: name})
    assert cache.load(key32) is None and not kc.holds(cache, key32)
    assert cache.load(key64) == "code for float64"
    cache.save(key32, "code for float32")
    index = cache._load_index()
    assert index[key32] != index[key64]
    assert cache.load(key32) == "code for float32"
    assert cache.load(key64) == "code for float64"
    # Another source stamp: the same key and file are not this code.
    from numba.core import caching
    other = caching.IndexDataCacheFile(str(tmp_path), "kernel-1.py311", "other stamp")
    other._save_index(index)
    assert other.load(key64) is None


def test_other_caches_keep_numbas_own_files(tmp_path):
    """Numba caches that are not fastnn's (a user's own @njit(cache=True))
    keep Numba's file format and save path."""
    from numba.core import caching

    import fastnn  # noqa: F401  (installs fastnn's cache files)
    cache = caching.IndexDataCacheFile(str(tmp_path), "user-1.py311", "stamp")
    cache.save(("sig",), "user code")
    assert cache.load(("sig",)) == "user code"
    name = cache._load_index()[("sig",)]
    assert not (tmp_path / name).read_bytes().startswith(b"FNNC")


def _lock_is_free(path):
    import fcntl

    from fastnn.runtime.kernel_cache import INDEX_LOCK
    fd = os.open(os.path.join(path, INDEX_LOCK), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_during_a_save_does_not_keep_the_lock(tmp_path):
    """A process forked while another thread saves a kernel (a Dask or
    multiprocessing worker) would share the index lock and hold it for
    its whole life: every later save elsewhere would wait on it."""
    import signal

    import fastnn.runtime.kernel_cache as kc
    ready_r, ready_w = os.pipe()
    with kc._index_lock(str(tmp_path)):
        pid = os.fork()
        if pid == 0:  # the child lives on, as a worker does
            import time
            os.write(ready_w, b"1")  # (after the fork handlers ran)
            time.sleep(30)
            os._exit(0)
    os.read(ready_r, 1)
    try:
        assert _lock_is_free(str(tmp_path))
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(ready_w)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs flock")
def test_a_save_does_not_wait_forever_on_a_stopped_holder(tmp_path, monkeypatch):
    """Another process holds the lock and does not let go (stopped with
    Ctrl-Z mid-save): the save goes on after LOCK_WAIT, and is right."""
    import fcntl

    import fastnn.runtime.kernel_cache as kc
    cache = _cache_file(tmp_path, monkeypatch)
    monkeypatch.setattr(kc, "LOCK_WAIT", 0.2)
    monkeypatch.setattr(kc, "_stuck", set())
    fd = os.open(os.path.join(str(tmp_path), kc.INDEX_LOCK), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        cache.save((("float32",), "target"), "code")
        cache.save((("float64",), "target"), "code 64")  # no second wait
    finally:
        os.close(fd)
    assert cache.load((("float32",), "target")) == "code"
    assert cache.load((("float64",), "target")) == "code 64"
    assert kc._stuck == {str(tmp_path)}
