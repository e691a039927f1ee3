"""Two threads meeting between phases inside one parallel region
(fastnn/kernels/team.py): each phase sees both parts of the one before; a
region whose iterations do not run at once finishes on one thread, and a
late second thread takes its part from the next round, with the same
results."""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from numba import prange

from fastnn.kernels import team
from fastnn.kernels.intrinsics import atomic_add, atomic_load, spin_pause
from fastnn.runtime import threads

ROUNDS = 40
SLOW_PART = 4000  # pauses

# How the test kernel's two iterations meet the team (with two threads they
# first wait for each other, so each case is set up, not left to timing):
PLAIN, TOGETHER, LATE, AFTER_END = 0, 1, 2, 3


@numba.njit(cache=False)
def _wait_for(flags, i, value):
    while atomic_load(flags, i) < value:
        spin_pause()


@numba.njit(parallel=True, cache=False)
def _rounds(a, who, joined, mode):
    # a[q + 1, part] depends on both parts of round q; part 1 is slow, so
    # part 0 would read its old value without the step between rounds.
    sync = team.team_sync()
    flags = np.zeros(16, np.int64)  # [0]: iterations here, [8]: thread 0 done
    for t in prange(2):
        if mode != PLAIN:
            atomic_add(flags, 0, 1)
            _wait_for(flags, 0, 2)
        if mode == LATE and t == 1:
            _wait_for(sync, team._ARRIVED, team._SOLO)  # thread 0 went on alone
        if mode == AFTER_END and t == 1:
            _wait_for(flags, 8, 1)
        role, first = team.team_join(sync, ROUNDS)
        joined[t, 0] = role
        joined[t, 1] = first
        ph = 0
        for q in range(first, ROUNDS):
            if role == team.BOTH and mode in (TOGETHER, LATE) and q == 1:
                # Alone so far: let the other ask, so it takes over here.
                while atomic_load(sync, team._HANDOVER) != team._ASK:
                    spin_pause()
            role = team.team_handover(sync, role, q)
            for part in range(team.first_part(role), team.end_part(role)):
                if part == 1:
                    for i in range(SLOW_PART):
                        spin_pause()
                a[q + 1, part] = (2 * a[q, 0] + a[q, 1] + part) % 1000003
                who[q, part] = t
            ph = team.team_step(sync, role, ph)
        team.team_finish(sync, role)
        if t == 0:
            atomic_add(flags, 8, 1)


def _expected():
    a = np.zeros((ROUNDS + 1, 2), np.int64)
    a[0] = 1, 2
    for q in range(ROUNDS):
        for part in range(2):
            a[q + 1, part] = (2 * a[q, 0] + a[q, 1] + part) % 1000003
    return a


def _run(n_threads, mode=PLAIN):
    """(first round the two threads shared (ROUNDS: none), each iteration's
    (role, first round) from team_join), after checking the values."""
    a = np.zeros((ROUNDS + 1, 2), np.int64)
    a[0] = 1, 2
    who = np.full((ROUNDS, 2), -1, np.int64)
    joined = np.full((2, 2), -1, np.int64)
    threads.run_with(n_threads, _rounds, a, who, joined, mode)
    np.testing.assert_array_equal(a, _expected())
    shared = who[:, 0] != who[:, 1]
    first = int(np.argmax(shared)) if shared.any() else ROUNDS
    assert shared[first:].all(), who  # once shared, shared to the end
    assert (who[:first] == who[0, 0]).all(), who  # before: one thread, both parts
    return first, joined.tolist()


def _two_threads_at_once():
    _run(1)  # (starts the pool)
    if numba.config.NUMBA_NUM_THREADS < 2 or numba.threading_layer() != "omp":
        pytest.skip("needs two threads whose iterations run at once (OpenMP)")


def test_two_threads_each_run_one_part_and_see_the_others_between_rounds():
    _two_threads_at_once()
    for _ in range(10):
        first, joined = _run(2, TOGETHER)
        # Both from round 0; a second thread slower than JOIN_PAUSES (taken
        # off its core) from round 1, when the first waits for it there.
        assert first <= 1 and sorted(r for r, _ in joined) in ([0, 1], [1, team.BOTH])


def test_one_thread_runs_both_parts_itself():
    first, joined = _run(1)
    assert first == ROUNDS
    assert sorted(joined) == [[team.BOTH, 0], [team.BOTH, ROUNDS]]  # the second: nothing


def test_a_second_thread_arriving_late_takes_its_part_from_the_next_round():
    _two_threads_at_once()
    for _ in range(5):
        first, joined = _run(2, LATE)
        assert joined[0] == [team.BOTH, 0] and joined[1][0] == 1
        assert first == joined[1][1] <= 1


def test_a_second_thread_arriving_after_the_end_finds_the_work_done():
    _two_threads_at_once()
    first, joined = _run(2, AFTER_END)
    assert first == ROUNDS and joined == [[team.BOTH, 0], [team.BOTH, ROUNDS]]


def test_split_fits_finish_and_agree_on_the_workqueue_threading_layer(tmp_path):
    # Numba's fallback layer, where a region's iterations may run one after
    # the other: the meeting must not wait for an iteration that has not
    # started (a deadlock here), and results stay those of the default layer.
    code = """
import sys, numpy as np, numba, fastnn
rng = np.random.default_rng(5)
x = rng.random((900, 40)).astype(np.float32)
x[rng.random(x.shape) < 0.8] = 0          # a sparse first layer
y = rng.integers(0, 3, 900)
xd = rng.normal(size=(900, 12))
out = []
for data, kw in (((x, y), dict(batch_size=32)),
                 ((x, y), dict(batch_size=50, shuffle=False, clip_norm=0.5)),
                 ((xd, y), dict(batch_size=64, optimizer="adam", lr=1e-3))):
    net = fastnn.Network([data[0].shape[1], 32, 16, 3], seed=1)
    net.fit(*data, epochs=2, **kw)
    out.append(net.theta)
np.save(sys.argv[1], np.concatenate(out))
print(numba.threading_layer())
"""
    results = {}
    for layer in ("workqueue", None):
        env = dict(os.environ, FASTNN_BACKEND="compiled")
        env.pop("NUMBA_THREADING_LAYER", None)
        if layer:
            env["NUMBA_THREADING_LAYER"] = layer
        path = tmp_path / f"{layer}.npy"
        r = subprocess.run([sys.executable, "-c", code, str(path)], env=env,
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-2000:]
        assert layer is None or r.stdout.split()[-1] == layer
        results[layer] = np.load(path)
    np.testing.assert_array_equal(results["workqueue"], results[None])
