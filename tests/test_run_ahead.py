"""Several short epochs per compiled call (``Trainer.run_ahead``): the same
parameters, history, stopping and divergence as one call per epoch."""
import math
import re
import warnings

import numpy as np
import pytest

import fastnn
from fastnn.engine import training
from fastnn.engine.stopping import ScheduleAndPatience, ScikitLearnRule


def _epoch_by_epoch(monkeypatch):
    monkeypatch.setattr(training.Trainer, "RUN_AHEAD_EPOCH_SECONDS", 0.0)


def _count_run_ahead(monkeypatch):
    calls = []
    real = training.Trainer.run_ahead

    def run_ahead(self, opt, state, rates):
        calls.append(len(rates))
        return real(self, opt, state, rates)

    monkeypatch.setattr(training.Trainer, "run_ahead", run_ahead)
    return calls


def _data(rng, n=90, d=5, k=3, dtype=np.float32):
    x = rng.standard_normal((n, d)).astype(dtype)
    return x, rng.integers(0, k, n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer,schedule", [("adam", "constant"), ("sgd", "step")])
def test_network_fit_runs_ahead_to_the_same_parameters_and_history(rng, monkeypatch, dtype,
                                                                   optimizer, schedule):
    x, y = _data(rng, dtype=dtype)
    results = []
    for ahead in (True, False):
        with monkeypatch.context() as m:
            calls = _count_run_ahead(m)
            if not ahead:
                _epoch_by_epoch(m)
            net = fastnn.Network([5, 7, 3], seed=1, dtype=dtype)
            net.fit(x, y, epochs=40, batch_size=32, optimizer=optimizer, lr=0.05,
                    momentum=0.9 if optimizer == "sgd" else 0.0,
                    lr_schedule=fastnn.schedules.Step(7, 0.5) if schedule == "step" else None)
            assert bool(calls) == ahead  # it ran ahead, or not at all
            results.append((net.theta.copy(), dict(net.history)))
    (ta, ha), (tb, hb) = results
    assert np.array_equal(ta, tb)
    for key in ("loss", "accuracy", "lr"):
        assert ha[key] == hb[key]
    assert len(ha["loss"]) == 40
    # the schedule's rates, epoch by epoch
    assert ha["lr"][7] == (0.025 if schedule == "step" else 0.05)


def test_sklearn_rule_stops_at_the_same_epoch(rng, monkeypatch):
    """scikit-learn's tol / n_iter_no_change rule can stop in the middle of
    what would be a long run of epochs: the runs end exactly there."""
    pytest.importorskip("sklearn")
    x, y = _data(rng, n=150, dtype=np.float64)
    fits = []
    for ahead in (True, False):
        with monkeypatch.context() as m:
            calls = _count_run_ahead(m)
            if not ahead:
                _epoch_by_epoch(m)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est = fastnn.MLPClassifier(hidden_layer_sizes=(20,), max_iter=500, tol=1e-3,
                                           n_iter_no_change=4, random_state=0).fit(x, y)
            assert bool(calls) == ahead
            assert all(k <= 5 for k in calls)  # never past a possible stop
            fits.append(est)
    a, b = fits
    assert a.n_iter_ == b.n_iter_ < 500  # stopped by the rule, not max_iter
    assert a.loss_curve_ == b.loss_curve_
    assert a.best_loss_ == b.best_loss_
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert np.array_equal(ca, cb)


def test_divergence_inside_a_run_is_undone_as_epoch_by_epoch(monkeypatch):
    """An SGD rate a little too high diverges after dozens of epochs, in
    the middle of a run: the error names the same epoch, the parameters are
    those before it, the history ends before it."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = x @ rng.standard_normal((4, 1)).astype(np.float32)
    outcomes = []
    for ahead in (True, False):
        with monkeypatch.context() as m:
            calls = _count_run_ahead(m)
            if not ahead:
                _epoch_by_epoch(m)
            net = fastnn.Network([4, 8, 1], output="identity", seed=0, dtype="float32")
            with pytest.raises(fastnn.TrainingDivergedError) as err:
                net.fit(x, y, epochs=200, lr=0.85, batch_size=64, optimizer="sgd")
            assert bool(calls) == ahead
            outcomes.append((str(err.value), net.theta.copy(), list(net.history["loss"])))
    (ea, ta, la), (eb, tb, lb) = outcomes
    # (The epoch depends on the rounding of the batch's products, which
    # differs between instruction sets: at this rate 20 on AVX-512 and AVX2
    # code and on NumPy; at 0.8, 54 on AVX-512 and none in 200 on AVX2.)
    epoch = int(re.search(r"epoch (\d+)", ea).group(1))
    assert 10 < epoch < 200 and ea == eb
    assert np.isfinite(ta).all() and np.array_equal(ta, tb)
    assert la == lb and len(la) == epoch - 1


def test_validation_callbacks_and_progress_keep_one_call_per_epoch(rng, monkeypatch):
    """What looks at the model between epochs sees every epoch's model."""
    x, y = _data(rng)
    calls = _count_run_ahead(monkeypatch)
    seen = []
    net = fastnn.Network([5, 7, 3], seed=1)
    net.fit(x, y, epochs=12, batch_size=32,
            callbacks=[lambda owner, history: seen.append(owner.theta.copy())])
    net.fit(x, y, epochs=12, batch_size=32, validation_data=(x, y))
    net.fit(x, y, epochs=12, batch_size=32, progress=lambda done, total: None)
    assert calls == [] and len(seen) == 12
    assert not np.array_equal(seen[-1], seen[-2])


def test_sklearn_rule_rates_ahead():
    rule = ScikitLearnRule(0.01)
    rule.configure(sgd=False, learning_rate="constant", learning_rate_init=0.01, power_t=0.5,
                   tol=1e-4, n_iter_no_change=10, early_stopping=False, verbose=False,
                   reset_rate=True)
    assert rule.rates_ahead(0, 100) == [0.01] * 11  # the 11th epoch may stop
    assert rule.rates_ahead(0, 3) == [0.01] * 3
    rule.no_improvement_count = 10
    assert rule.rates_ahead(0, 100) == [0.01]
    rule.no_improvement_count = 0
    rule.n_iter_no_change = math.inf
    assert len(rule.rates_ahead(0, 50)) == 50
    rule.configure(sgd=True, learning_rate="invscaling", learning_rate_init=0.01, power_t=0.5,
                   tol=1e-4, n_iter_no_change=10, early_stopping=False, verbose=False,
                   reset_rate=True)
    assert rule.rates_ahead(0, 100) == [0.01]  # the rate changes every epoch
    rule.configure(sgd=False, learning_rate="constant", learning_rate_init=0.01, power_t=0.5,
                   tol=1e-4, n_iter_no_change=10, early_stopping=True, verbose=False,
                   reset_rate=True)
    assert rule.rates_ahead(0, 100) == [0.01]  # validates every epoch


def test_schedule_rates_ahead():
    policy = ScheduleAndPatience(fastnn.schedules.Step(2, 0.5), 1.0)
    assert policy.rates_ahead(1, 4) == [1.0, 0.5, 0.5, 0.25]
    policy = ScheduleAndPatience(fastnn.schedules.Constant(), 1.0, early_stopping=True)
    assert policy.rates_ahead(0, 4) == [1.0]


def test_a_later_fit_chunks_its_epoch_by_the_batch_time_measured_before(rng, monkeypatch):
    """``fit(epochs=1)`` again and again (a user's own epoch loop): only a
    network's first epoch of some work runs as ``EPOCH_CHUNKS`` compiled
    calls; later fits' epochs run in calls of at least ``MIN_CHUNK_SECONDS``
    by the batch time measured before, as a fit's later epochs do (a call
    costs the unboxing of every argument array). The chunks never change
    the result."""
    from fastnn.runtime.compiled import CompiledBackend

    calls = []
    real = CompiledBackend._run

    def _run(chooser, trainer, n_threads, first, last, *rest):
        calls.append(last - first)
        return real(chooser, trainer, n_threads, first, last, *rest)

    monkeypatch.setattr(CompiledBackend, "_run", staticmethod(_run))
    monkeypatch.setattr(training.Trainer, "MIN_CHUNK_SECONDS", 1e6)  # an epoch a call
    x, y = _data(rng, n=2000)
    net = fastnn.Network([5, 7, 3], seed=1)
    twin = fastnn.Network([5, 7, 3], seed=1)
    for i in range(3):
        calls.clear()
        net.fit(x, y, epochs=1, batch_size=20)  # 100 batches
        assert sum(calls) == 100
        # (the thread chooser may split a call in two to time the other count)
        assert len(calls) >= 50 if i == 0 else len(calls) <= 2, calls
        twin.engine.batch_seconds.clear()
        twin.fit(x, y, epochs=1, batch_size=20)
        assert np.array_equal(net.theta, twin.theta)
    assert net.history["loss"] == twin.history["loss"]


@pytest.mark.parametrize("layers,density", [([20, 32, 3], 1.0), ([60, 24, 3], 0.2)])
def test_an_epoch_sums_the_same_bits_however_its_batches_are_cut(rng, monkeypatch, layers,
                                                                 density):
    """Row-split batches (64 rows: two halves; the second network's first
    layer sparse) add their losses to the epoch's sums batch by batch, in
    order: the epoch in one compiled call and in a call per batch report
    the same loss to the bit, as they train the same parameters."""
    x, y = _data(rng, n=6000, d=layers[0])
    x[rng.random(x.shape) >= density] = 0
    runs = []
    for per_call in ("epoch", "batch"):
        with monkeypatch.context() as m:
            _epoch_by_epoch(m)
            m.setattr(training.Trainer, "EPOCH_CHUNKS", 1 if per_call == "epoch" else 10**6)
            m.setattr(training.Trainer, "MIN_CHUNK_SECONDS", 1e6 if per_call == "epoch" else 0.0)
            net = fastnn.Network(layers, seed=1)
            net.fit(x, y, epochs=2, batch_size=64)
            runs.append((net.theta.copy(), net.history["loss"]))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
