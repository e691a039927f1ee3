"""Robustness under real faults (round 2): threads, numbers, files and the
command line. Each case gives a clear error naming the argument or path,
or correct behaviour, and loses nothing."""
import errno
import json
import os
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn.cli import app as cli
from fastnn.engine import modelio

pytestmark = pytest.mark.both_backends


def data(rng, n=300, d=12, k=3):
    return rng.random((n, d)).astype(np.float32), rng.integers(0, k, n)


# ----------------------------------------------------------------- threads
def test_a_second_fit_on_a_training_network_is_refused(rng):
    x, y = data(rng, 3000, 40)
    net = fastnn.Network([40, 64, 3], seed=0)
    net.fit(x, y, epochs=1)  # compiled
    started, errors = threading.Event(), []

    def slow_callback(n, h):
        started.set()
        second.join(timeout=60)

    def second_fit():
        started.wait(60)
        try:
            net.fit(x, y, epochs=1)
        except RuntimeError as e:
            errors.append(str(e))

    second = threading.Thread(target=second_fit)
    second.start()
    net.fit(x, y, epochs=2, callbacks=[slow_callback])
    second.join()
    assert errors and "already training" in errors[0]
    assert len(net.history["loss"]) == 2
    net.fit(x, y, epochs=1)  # and free again afterwards


def test_concurrent_predict_is_safe_under_the_workqueue_layer():
    code = r"""
import numpy as np, fastnn, numba
from concurrent.futures import ThreadPoolExecutor
rng = np.random.default_rng(0)
x = rng.random((3000, 30))
net = fastnn.Network([30, 300, 5], seed=0)
net.fit(x, rng.integers(0, 5, 3000), epochs=1)
assert numba.threading_layer() == "workqueue"
chunks = [x[i::5] for i in range(5)] * 4
serial = [net.predict_proba(c) for c in chunks]
with ThreadPoolExecutor(6) as pool:
    par = list(pool.map(net.predict_proba, chunks))
assert all(np.array_equal(a, b) for a, b in zip(serial, par))
print("ok")
"""
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


# ----------------------------------------------------------------- numbers
def test_an_init_scale_beyond_the_dtype_is_refused():
    with pytest.raises(ValueError, match="init_scale.*float32"):
        fastnn.Network([4, 3], init_scale=1e39, dtype="float32")
    fastnn.Network([4, 3], init_scale=1e39, dtype="float64")


def test_divergence_from_huge_inputs_names_the_input_scale(rng):
    x, y = data(rng)
    net = fastnn.Network([12, 8, 3], seed=0)
    with pytest.raises(fastnn.TrainingDivergedError, match=r"inputs reach \|x\| = .*scale"):
        net.fit(x.astype(np.float64) * 1e30, y, epochs=1, lr=0.1)


def test_sparse_matrices_train_like_dense_ones(rng):
    sparse = pytest.importorskip("scipy.sparse")
    x, y = data(rng)
    x[x < 0.7] = 0
    a = fastnn.Network([12, 8, 3], seed=0)
    b = fastnn.Network([12, 8, 3], seed=0)
    a.fit(x, y, epochs=2)
    b.fit(sparse.csr_matrix(x), y, epochs=2)
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.predict(x), b.predict(sparse.csc_matrix(x)))


def test_interrupt_during_validation_keeps_history_and_parameters_consistent(rng,
                                                                             monkeypatch):
    x, y = data(rng)
    net = fastnn.Network([12, 8, 3], seed=0)
    calls = []
    real = net._evaluate

    def evaluate(*a):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a)

    net.fit(x, y, epochs=1)
    monkeypatch.setattr(net, "_evaluate", evaluate)
    after_one = []
    with pytest.raises(KeyboardInterrupt):
        net.fit(x, y, epochs=3, validation_split=0.2,
                callbacks=[lambda n, h: after_one.append(n.theta.copy())])
    h = net.history
    assert {len(v) for v in h.values()} == {1}
    np.testing.assert_array_equal(net.theta, after_one[0])


# ------------------------------------------------------------------- files
def test_save_cleans_up_after_killed_saves_and_names_the_users_path(tmp_path, rng):
    net = fastnn.Network([4, 3], seed=0)
    dead = tmp_path / f"{modelio.TEMP_PREFIX}999999999-abcd{modelio.TEMP_SUFFIX}"
    live = tmp_path / f"{modelio.TEMP_PREFIX}{os.getppid()}-abcd{modelio.TEMP_SUFFIX}"
    dead.write_bytes(b"x" * 100)
    live.write_bytes(b"x")
    net.save(tmp_path / "m.npz")
    assert not dead.exists() and live.exists()
    with pytest.raises(OSError, match=str(tmp_path / "nope" / "m.npz")):
        net.save(tmp_path / "nope" / "m.npz")


def test_sigkilled_saves_leave_nothing_behind_on_the_next_save(tmp_path):
    code = (r"import os, signal, numpy as np, fastnn, fastnn.engine.modelio as m"
            "\nnet = fastnn.Network([784, 512, 10], seed=0)"
            "\nreal = np.savez"
            "\ndef savez(f, **a):\n    real(f, **a)\n    os.kill(os.getpid(), signal.SIGKILL)"
            "\nnp.savez = savez"
            f"\nnet.save({str(tmp_path / 'm.npz')!r})")
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", code], timeout=300)
        assert r.returncode == -9
    # each save removes the temporaries of the killed ones before it
    assert len(list(tmp_path.glob(f"{modelio.TEMP_PREFIX}*"))) == 1
    fastnn.Network([4, 3]).save(tmp_path / "other.npz")
    assert list(tmp_path.glob(f"{modelio.TEMP_PREFIX}*")) == []


def _forge(path, src, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            edit(zout, info, zin.read(info))


def test_forged_member_sizes_and_duplicates_are_refused(tmp_path):
    good = tmp_path / "good.npz"
    fastnn.Network([4, 3], seed=0).save(good)
    dup = tmp_path / "dup.npz"

    def duplicate(zout, info, raw):
        zout.writestr(info, raw)
        if info.filename == "W0.npy":
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                zout.writestr(info, raw)

    _forge(dup, good, duplicate)
    with pytest.raises(ValueError, match="appears twice"):
        fastnn.Network.load(dup)
    raw = bytearray(good.read_bytes())
    # Central directory entry of the first member: claim a 4 GB file size.
    cd = raw.rfind(b"PK\x01\x02", 0, len(raw))
    first = raw.find(b"PK\x01\x02")
    raw[first + 24:first + 28] = (0xFFFFFFF0).to_bytes(4, "little")
    forged = tmp_path / "forged.npz"
    forged.write_bytes(bytes(raw))
    assert cd >= first
    with pytest.raises(ValueError):
        fastnn.Network.load(forged)


# ------------------------------------------------------------ command line
@pytest.fixture
def dataset(tmp_path, rng):
    x, y = data(rng, 200)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    return str(tmp_path / "d.npz")


def test_train_refuses_an_unwritable_output_before_training(tmp_path, dataset, capsys):
    out = tmp_path / "a-directory"
    out.mkdir()
    for flag in ("--save", "--json", "--plot"):
        assert cli.main(["train", "--data", dataset, "--epochs", "1", flag, str(out)]) == 1
        err = capsys.readouterr().err
        assert "is a directory" in err and "epoch" not in err


def test_a_failed_save_keeps_the_model_elsewhere_and_says_where(tmp_path, dataset, capsys,
                                                                monkeypatch):
    real = fastnn.Network.save
    calls = []

    def save(self, path):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, f"cannot write {path}: No space left on device")
        return real(self, path)

    monkeypatch.setattr(fastnn.Network, "save", save)
    assert cli.main(["train", "--data", dataset, "--epochs", "1", "--quiet",
                     "--save", str(tmp_path / "m.npz")]) == 1
    err = capsys.readouterr().err
    assert "No space left" in err and "saved to" in err
    fastnn.Network.load(calls[1])
    os.unlink(calls[1])


def test_outputs_are_written_atomically(tmp_path, dataset, monkeypatch):
    hist = tmp_path / "h.json"
    hist.write_text('{"previous": true}')
    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert cli.main(["train", "--data", dataset, "--epochs", "1", "--quiet",
                     "--json", str(hist)]) == 1
    assert json.loads(hist.read_text()) == {"previous": True}
    monkeypatch.setattr(os, "fsync", real)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".fastnn")] == []


def test_sparse_inputs_stay_sparse_in_fit_predict_and_the_estimators(rng):
    sparse = pytest.importorskip("scipy.sparse")
    X = sparse.random(400, 3000, density=0.01, format="csr", random_state=0, dtype=np.float64)
    y = np.asarray(X[:, :50].sum(axis=1)).ravel() > np.median(np.asarray(X[:, :50].sum(axis=1)))
    y = y.astype(int)
    dense = X.toarray()
    a = fastnn.Network([3000, 16, 2], seed=0, dtype="float64")
    b = fastnn.Network([3000, 16, 2], seed=0, dtype="float64")
    a.fit(dense, y, epochs=2, batch_size=32, validation_split=0.25)
    b.fit(X, y, epochs=2, batch_size=32, validation_split=0.25)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.predict_proba(dense), b.predict_proba(X.tocsc()), rtol=1e-10)
    assert b.evaluate(X, y)["loss"] == pytest.approx(a.evaluate(dense, y)["loss"], rel=1e-10)
    from fastnn import MLPClassifier
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        c1 = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0).fit(dense, y)
        c2 = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0).fit(X, y)
    np.testing.assert_allclose(c1.predict_proba(dense), c2.predict_proba(X), rtol=1e-9)


# ------------------------------------------------- special files as paths
def _fifo(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("this system cannot make a FIFO (os.mkfifo)")
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def test_writers_refuse_a_fifo_or_device_and_leave_it_alone(tmp_path, dataset, capsys):
    fifo = _fifo(tmp_path)
    net = fastnn.Network([4, 3, 2], seed=0)
    with pytest.raises(ValueError, match="is a FIFO"):
        net.save(fifo)
    assert os.path.exists(fifo) and not os.path.isfile(fifo)  # still the FIFO
    with pytest.raises(ValueError, match="is a character device"):
        modelio.regular_destination("/dev/null")
    rc = cli.main(["train", "--data", str(dataset), "--epochs", "1", "--json", str(fifo)])
    err = capsys.readouterr().err
    assert rc == 1 and "is a FIFO" in err and "epoch" not in err  # refused before training


def test_a_symlink_to_a_model_file_is_followed_and_kept(tmp_path, rng):
    target = tmp_path / "real.npz"
    link = tmp_path / "link.npz"
    a = fastnn.Network([4, 3, 2], seed=0)
    a.save(target)
    os.symlink(target, link)
    b = fastnn.Network([4, 3, 2], seed=1)
    b.save(link)                       # the target is replaced, atomically; the link stays
    assert os.path.islink(link)
    np.testing.assert_array_equal(fastnn.Network.load(target).theta, b.theta)


def test_load_refuses_what_is_not_a_regular_file_before_reading_it(tmp_path, capsys):
    fifo = _fifo(tmp_path)
    for path, words in ((fifo, "is a FIFO"), ("/dev/zero", "is a character device")):
        with pytest.raises(ValueError, match=words):
            fastnn.Network.load(path)     # a FIFO would block, /dev/zero never end
    with pytest.raises(IsADirectoryError, match="is a directory"):
        fastnn.Network.load(tmp_path)
    rc = cli.main(["evaluate", str(tmp_path)])
    assert rc == 1 and "is a directory" in capsys.readouterr().err


def _fork_child_work(args):
    net, x, y = args
    p = net.predict_proba(x)
    fresh = fastnn.Network([12, 32, 3], seed=0)
    fresh.fit(x, y, epochs=1, batch_size=64)
    return p, fresh.theta.copy()


@pytest.mark.kernels
def test_a_child_forked_before_the_first_fit_runs_the_compiled_kernels(tmp_path):
    """Numba's thread pool starts at the first kernel, not when a network
    is made: a process that makes its networks and then forks workers to
    train them (before any fit) trains them on the compiled kernels in each
    child, as the parent does after it (GNU OpenMP cannot run in a child
    forked once the pool started)."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("this system has no fork start method")
    code = (
        "import os, sys, numpy as np, fastnn\n"
        "from fastnn.runtime import threads\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.random((600, 12)).astype(np.float32); y = rng.integers(0, 3, 600)\n"
        "nets = [fastnn.Network([12, 32, 3], seed=0) for _ in range(2)]  # made, not fitted\n"
        "pid = os.fork()\n"
        "net = nets[pid == 0]\n"
        "if pid == 0:\n"
        "    ok = not threads.pool_unusable()  # else backend.choose() picks NumPy\n"
        "    net.fit(x, y, epochs=1, batch_size=64)\n"
        "    np.save(sys.argv[1], net.theta)\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert os.waitstatus_to_exitcode(status) == 0, status\n"
        "net.fit(x, y, epochs=1, batch_size=64)\n"
        "np.testing.assert_array_equal(np.load(sys.argv[1]), net.theta)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "child.npy")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]


def test_a_forked_child_works_after_the_parent_ran_parallel_kernels(rng):
    """GNU OpenMP aborts a forked child's first parallel region once the
    parent's pool has run; the child then runs on NumPy (never a hang)."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("this system has no fork start method")
    x = rng.random((600, 12)).astype(np.float32)
    y = rng.integers(0, 3, 600)
    net = fastnn.Network([12, 32, 3], seed=0)
    net.fit(x, y, epochs=1, batch_size=64)
    expected = net.predict_proba(x)
    alone = fastnn.Network([12, 32, 3], seed=0)
    alone.fit(x, y, epochs=1, batch_size=64)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map_async(_fork_child_work, [(net, x, y)] * 2).get(timeout=240)
    for p, theta in results:
        np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(theta, alone.theta, rtol=1e-4, atol=1e-5)
