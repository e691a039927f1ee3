"""Training options of fastnn.Network (Adam, L2, schedules, early stopping,
callbacks, partial_fit, progress, interruption) against the reference and
against what each option must change."""
import io
import pickle
import sys

import numpy as np
import pytest

from conftest import DTYPES, assert_close
import fastnn
import fastnn.engine.inputs  # noqa: F401
import fastnn.engine.training  # noqa: F401
from fastnn import reference as R
from fastnn import schedules
from fastnn.kernels import train as K
from test_network import flatten, make_data, ref_params

pytestmark = pytest.mark.both_backends


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("opt", [
    dict(optimizer="adam", lr=0.01),
    dict(optimizer="adam", lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6, l2=0.05),
    dict(optimizer="sgd", lr=0.1, l2=0.2),
    dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, l2=0.1),
    dict(optimizer="sgd", lr=0.1, l2=0.5, _per_row=True),
])
@pytest.mark.parametrize("hidden,output,arch", [
    ("relu", "softmax", [13, 65, 33, 4]),
    ("tanh", "identity", [6, 9, 2]),
])
def test_optimizer_trajectory_matches_reference(rng, monkeypatch, dtype, shuffle, sparse, opt,
                                                hidden, output, arch):
    opt = dict(opt)
    per_row = opt.pop("_per_row", False)
    net = fastnn.Network(arch, hidden=hidden, output=output, seed=11, dtype=dtype)
    x, y = make_data(rng, net, 53)
    x = x.astype(dtype)
    if sparse:
        x[rng.random(x.shape) < 0.6] = 0
    monkeypatch.setattr(fastnn.engine.inputs, "SPARSE_MAX_DENSITY", 1.0 if sparse else 0.0)
    params = ref_params(net)
    ropt = R.Optimizer(params, kind=opt["optimizer"], **{
        k: v for k, v in opt.items() if k != "optimizer"}, l2_per_row=per_row)
    state = net.engine.shuffle_state.copy()
    ref_losses = []
    for epoch in range(3):
        order = np.arange(53)
        if shuffle:
            K.shuffle_inplace(order, state)
        ref_losses.append(R.train_epoch(params, x.astype(np.float64), y, None, 8, hidden,
                                        output, order=order, optimizer=ropt))
    if per_row:
        # scikit-learn's alpha: the estimators pass it this way.
        from fastnn.engine import stopping, training
        trainer = net._trainer(net._check_x(x), *net._check_y(y, 53), 8, shuffle)
        o = training.optimizer(opt.pop("optimizer"), l2_per_row=True,
                               **opt)
        hist = training.run_epochs(trainer, o, training.fresh_state(o.kind, net.theta),
                                   stopping.ScheduleAndPatience(schedules.Constant(), o.lr), 3,
                                   training.Watch(training.new_history(False)))
    else:
        hist = net.fit(x, y, epochs=3, batch_size=8, shuffle=shuffle, **opt)
    assert_close(hist["loss"], ref_losses, dtype, what="epoch losses")
    assert_close(net.theta, flatten(params), dtype, what="parameters")


def test_l2_shrinks_the_weights_but_not_the_biases(rng):
    x = rng.standard_normal((200, 8))
    y = (x[:, 0] > 0).astype(int)
    norms = {}
    for l2 in (0.0, 0.5):
        net = fastnn.Network([8, 16, 2], seed=1)
        net.fit(x, y, epochs=20, batch_size=20, lr=0.1, l2=l2)
        norms[l2] = (sum(float((W ** 2).sum()) for W in net.weights),
                     [b.copy() for b in net.biases])
    assert norms[0.5][0] < 0.5 * norms[0.0][0]
    # One step: same forward pass, so the biases' gradients (and updates)
    # agree with and without the penalty, while every weight differs.
    nets = []
    for l2 in (0.0, 0.5):
        net = fastnn.Network([8, 16, 2], seed=1)
        net.fit(x, y, epochs=1, batch_size=200, lr=0.1, l2=l2)
        nets.append(net)
    for l in range(2):
        assert np.array_equal(nets[0].biases[l], nets[1].biases[l])
        assert (nets[0].weights[l] != nets[1].weights[l]).all()


def test_adam_state_starts_fresh_per_fit_and_continues_in_partial_fit(rng):
    x = rng.standard_normal((64, 5))
    y = rng.integers(0, 3, 64)
    a = fastnn.Network([5, 11, 3], seed=2)
    a.fit(x, y, epochs=3, batch_size=10, optimizer="adam", lr=0.01)
    b = fastnn.Network([5, 11, 3], seed=2)
    for _ in range(3):
        r = b.partial_fit(x, y, batch_size=10, optimizer="adam", lr=0.01)
    assert set(r) == {"loss", "accuracy"}
    assert np.array_equal(a.theta, b.theta)
    c = fastnn.Network([5, 11, 3], seed=2)
    for _ in range(3):
        c.fit(x, y, epochs=1, batch_size=10, optimizer="adam", lr=0.01)
    assert not np.array_equal(a.theta, c.theta)  # fresh moments on each fit


def test_step_schedule_equals_fits_at_the_scheduled_rates(rng):
    x = rng.standard_normal((50, 4))
    y = rng.integers(0, 2, 50)
    a = fastnn.Network([4, 7, 2], seed=5)
    hist = a.fit(x, y, epochs=3, batch_size=8, lr=0.4, lr_schedule=schedules.Step(1, 0.5))
    assert hist["lr"] == [0.4, 0.2, 0.1]
    b = fastnn.Network([4, 7, 2], seed=5)
    for lr in (0.4, 0.2, 0.1):
        b.fit(x, y, epochs=1, batch_size=8, lr=lr)
    assert np.array_equal(a.theta, b.theta)
    c = fastnn.Network([4, 7, 2], seed=5)
    c.fit(x, y, epochs=3, batch_size=8, lr=0.4)
    assert not np.array_equal(a.theta, c.theta)


def test_schedule_values():
    assert schedules.Step(2, 0.1)(3, 1.0) == pytest.approx(0.1)
    assert schedules.InvScaling(0.5)(3, 1.0) == pytest.approx(0.5)
    cos = schedules.get("cosine", 4)
    assert [cos(e, 1.0) for e in range(5)] == pytest.approx(
        [1.0, 0.5 + 0.5 * np.cos(np.pi / 4), 0.5, 0.5 - 0.5 * np.cos(np.pi / 4), 0.0])
    assert schedules.Cosine(2, 0.1)(5, 1.0) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lr_schedule"):
        schedules.get("exponential", 3)
    with pytest.raises(ValueError, match="gamma"):
        schedules.Step(1, 1.5)


def test_callable_schedule_and_a_bad_rate_from_it(rng):
    x = rng.standard_normal((20, 3))
    y = rng.integers(0, 2, 20)
    net = fastnn.Network([3, 2], seed=0)
    hist = net.fit(x, y, epochs=2, lr=0.3, lr_schedule=lambda e, lr: lr / (e + 2))
    assert hist["lr"] == pytest.approx([0.15, 0.1])
    before = net.theta.copy()
    with pytest.raises(ValueError, match="lr_schedule gave lr=-1"):
        net.fit(x, y, epochs=2, lr_schedule=lambda e, lr: -1.0)
    assert np.array_equal(net.theta, before)


def test_early_stopping_restores_the_best_epoch(rng):
    # Noisy labels and a large network overfit: validation loss turns up.
    x = rng.standard_normal((60, 10))
    y = rng.integers(0, 2, 60)
    xv = rng.standard_normal((200, 10))
    yv = rng.integers(0, 2, 200)
    net = fastnn.Network([10, 64, 2], seed=3, init="he")
    seen = []
    hist = net.fit(x, y, epochs=200, batch_size=10, lr=0.2, validation_data=(xv, yv),
                   early_stopping=True, patience=4,
                   callbacks=[lambda n, h: seen.append(n.theta.copy())])
    n_epochs = len(hist["val_loss"])
    best = int(np.argmin(hist["val_loss"]))
    assert n_epochs < 200 and n_epochs == best + 1 + 4
    assert hist["best_epoch"] == best + 1
    assert np.array_equal(net.theta, seen[best])
    assert net.evaluate(xv, yv)["loss"] == pytest.approx(hist["val_loss"][best])


def test_early_stopping_needs_validation_and_split_holds_out_the_last_rows(rng):
    x = rng.standard_normal((40, 3))
    y = rng.integers(0, 2, 40)
    net = fastnn.Network([3, 5, 2], seed=0)
    with pytest.raises(ValueError, match="early_stopping needs"):
        net.fit(x, y, early_stopping=True)
    hist = net.fit(x, y, epochs=2, batch_size=5, validation_split=0.25, shuffle=False)
    assert hist["val_loss"][-1] == pytest.approx(net.evaluate(x[30:], y[30:])["loss"])
    twin = fastnn.Network([3, 5, 2], seed=0)
    twin.fit(x[:30], y[:30], epochs=2, batch_size=5, shuffle=False)
    assert np.array_equal(net.theta, twin.theta)
    with pytest.raises(ValueError, match="validation_split"):
        net.fit(x[:2], y[:2], validation_split=0.1)


def test_a_callback_can_stop_training(rng):
    x = rng.standard_normal((20, 3))
    y = rng.integers(0, 2, 20)
    net = fastnn.Network([3, 2], seed=0)
    calls = []

    def cb(n, h):
        calls.append(len(h["loss"]))
        return len(h["loss"]) == 2

    hist = net.fit(x, y, epochs=10, callbacks=cb)
    assert calls == [1, 2] and len(hist["loss"]) == 2
    with pytest.raises(TypeError, match="callbacks"):
        net.fit(x, y, callbacks=[1])


def test_progress_reports_between_chunks_without_changing_results(rng):
    x = rng.standard_normal((1000, 6))
    y = rng.integers(0, 3, 1000)
    a = fastnn.Network([6, 9, 3], seed=0)
    b = fastnn.Network([6, 9, 3], seed=0)
    a.fit(x, y, epochs=2, batch_size=7)
    ticks = []
    b.fit(x, y, epochs=2, batch_size=7, progress=lambda d, t: ticks.append((d, t)))
    assert np.array_equal(a.theta, b.theta)
    nb = -(-1000 // 7)
    assert ticks[-1] == (nb, nb) and len(ticks) >= 2 * 40
    assert all(d2 > d1 for (d1, _), (d2, _) in zip(ticks, ticks[1:]) if d2 != ticks[0][0])


def test_progress_bar_text():
    import io
    out = io.StringIO()
    bar = fastnn.engine.progress.ProgressBar(width=10, stream=out)
    bar(5, 10)
    bar(10, 10)
    text = out.getvalue()
    assert "[#####.....] 5/10 batches" in text and text.endswith("\r\x1b[K")


def test_keyboard_interrupt_keeps_the_last_completed_epoch_and_history(rng):
    x = rng.standard_normal((500, 6))
    y = rng.integers(0, 3, 500)
    net = fastnn.Network([6, 9, 3], seed=0)
    after_epoch = []

    def interrupt(done, total):
        if len(net.history["loss"]) == 1 and done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        net.fit(x, y, epochs=3, batch_size=5, progress=interrupt, optimizer="adam", lr=0.01,
                callbacks=[lambda n, h: after_epoch.append(n.theta.copy())])
    assert len(net.history["loss"]) == 1
    assert np.array_equal(net.theta, after_epoch[0])
    # The optimizer state was rolled back too: continuing equals an
    # uninterrupted second epoch.
    ref = fastnn.Network([6, 9, 3], seed=0)
    ref.fit(x, y, epochs=2, batch_size=5, optimizer="adam", lr=0.01)
    net.partial_fit(x, y, batch_size=5, optimizer="adam", lr=0.01)
    assert np.array_equal(net.theta, ref.theta)


def test_pickle_round_trip_keeps_live_views(rng):
    net = fastnn.Network([4, 6, 3], seed=1)
    x = rng.standard_normal((30, 4))
    net.fit(x, rng.integers(0, 3, 30), epochs=2)
    twin = pickle.loads(pickle.dumps(net))
    assert np.array_equal(twin.predict_proba(x), net.predict_proba(x))
    twin.weights[0][0, 0] = 42.0
    assert twin.theta[0] == 42.0 and net.theta[0] != 42.0


@pytest.mark.parametrize("kw,err,match", [
    ({"optimizer": "lion"}, ValueError, "optimizer"),
    ({"optimizer": "adamw", "weight_decay": -0.1}, ValueError, "weight_decay"),
    ({"optimizer": "adamw", "lr": 10.0, "weight_decay": 0.5}, ValueError, "lr \\* weight_decay"),
    ({"class_weight": "even"}, ValueError, "class_weight"),
    ({"sample_weight": [1.0]}, ValueError, "sample_weight"),
    ({"beta1": 1.0}, ValueError, "beta1"),
    ({"beta2": -0.1}, ValueError, "beta2"),
    ({"eps": 0}, ValueError, "eps"),
    ({"l2": -1}, ValueError, "l2"),
    ({"l2": float("nan")}, ValueError, "l2"),
    ({"lr_schedule": "warmup"}, ValueError, "lr_schedule"),
    ({"lr_schedule": 3}, TypeError, "lr_schedule"),
    ({"patience": 0}, ValueError, "patience"),
    ({"validation_split": 1.0}, ValueError, "validation_split"),
    ({"nesterov": "yes"}, TypeError, "nesterov"),
    ({"shuffle": None}, TypeError, "shuffle"),
    ({"progress": "bar"}, TypeError, "progress"),
])
def test_bad_training_options_leave_the_model_unchanged(rng, kw, err, match):
    net = fastnn.Network([3, 2], seed=0)
    before = net.theta.copy()
    with pytest.raises(err, match=match):
        net.fit(rng.standard_normal((8, 3)), rng.integers(0, 2, 8), epochs=2, **kw)
    assert np.array_equal(before, net.theta)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_true_uses_an_epoch_bar_from_tqdm(monkeypatch, rng):
    pytest.importorskip("tqdm")
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    x = rng.random((200, 5))
    y = rng.integers(0, 3, 200)
    fastnn.Network([5, 6, 3], seed=0).fit(x, y, epochs=3, batch_size=20, progress=True,
                                          validation_split=0.2)
    text = term.getvalue()
    assert "3/3" in text and "loss=" in text and "val_accuracy=" in text


def test_progress_bar_is_silent_on_a_pipe_and_falls_back_without_tqdm(monkeypatch, rng):
    pipe = io.StringIO()  # not a terminal: nothing drawn
    monkeypatch.setattr(sys, "stderr", pipe)
    x = rng.random((100, 5))
    y = rng.integers(0, 3, 100)
    fastnn.Network([5, 6, 3], seed=0).fit(x, y, epochs=2, batch_size=20, progress=True)
    assert pipe.getvalue() == ""
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # tqdm not installed
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    fastnn.Network([5, 6, 3], seed=0).fit(x, y, epochs=2, batch_size=20, progress=True)
    assert "1/5 batches" in term.getvalue()  # the batch-level fallback bar
