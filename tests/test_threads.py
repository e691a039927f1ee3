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
