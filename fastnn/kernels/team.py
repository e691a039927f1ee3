"""Two threads through a sequence of phases inside one parallel region.

A row-split batch (``train.split_run``) is three short phases, each half
the work per thread, with each phase reading what both threads wrote in
the one before. As a parallel region per phase, every batch paid three
region starts and joins; one region per run of batches, with the two
threads meeting between phases on a shared counter, pays one.

Usage, inside ``for t in prange(2):``, for ``rounds`` rounds (batches) of
phases::

    role, first = team_join(sync, rounds)          # sync = team_sync()
    for q in range(first, rounds):
        role = team_handover(sync, role, q)
        for part in range(first_part(role), end_part(role)):
            ...phase 0 of round q, part `part`...
        ph = team_step(sync, role, ph)                 # ph = 0 at the start
        ...
    team_finish(sync, role)

Roles: 0 and 1 (each thread runs its part of every phase, and waits for
the other's at each step) or ``BOTH`` (the thread runs both parts in
order, with no waits). A region whose two iterations do not run at once
never deadlocks: when the second does not arrive within ``JOIN_PAUSES``
(one thread; a threading layer that gives both iterations to one worker;
a thread slow to wake), the first goes on with ``BOTH``. If the second
then arrives while rounds remain, it takes part 1 from the next round on;
if not, it finds the rounds done. Each part writes only its own outputs,
so every role gives the same bits.
"""
import numpy as np
from numba import prange

from .._config import PARALLEL, jit, jit_inline, jit_parallel
from .intrinsics import (atomic_add, atomic_cas, atomic_load, pool_threads, spin_pause,
                         yield_cpu)

BOTH = 2

# sync's words, a cache line apart: arrivals (SOLO once the first went on
# alone), parts finished, and the hand-over (ASK: the late thread waits;
# then the round it starts at, plus one, or FINISHED).
_ARRIVED = 0
_DONE = 8
_HANDOVER = 16
_SOLO = 1 << 40
_ASK = -1
_FINISHED = 1 << 40

# Waits spin with `pause` (~65 cycles on Zen, ~140 on recent Intel: tens of
# microseconds in all, longer than a phase's usual imbalance), then give the
# core away between checks: the awaited thread may be queued behind this one.
SPIN_PAUSES = 2000
# The first arrival waits this long for the second before going on alone.
JOIN_PAUSES = 4000


@jit
def team_sync():
    """A fresh counter block for one parallel region."""
    return np.zeros(3 * 8, np.int64)


@jit
def _wait_at_least(sync, word, target):
    """Wait until ``sync[word] >= target``; returns its value then."""
    spins = 0
    v = atomic_load(sync, word)
    while v < target:
        if spins < SPIN_PAUSES:
            spin_pause()
            spins += 1
        else:
            yield_cpu()
        v = atomic_load(sync, word)
    return v


@jit
def team_join(sync, rounds):
    """(role, first round) of this iteration (see the module's text)."""
    before = atomic_add(sync, _ARRIVED, 1)
    if before == 1:
        return 1, 0
    if before >= _SOLO:  # the first went on alone: ask it for the rest
        if not atomic_cas(sync, _HANDOVER, 0, _ASK):
            return BOTH, rounds  # (finished)
        v = _wait_at_least(sync, _HANDOVER, 0)  # (ASK is -1; then a round + 1 or FINISHED)
        return (1, v - 1) if v < _FINISHED else (BOTH, rounds)
    # (Compiled without parallel, the two iterations run one after the other.)
    if PARALLEL and pool_threads() >= 2:
        for i in range(JOIN_PAUSES):
            if atomic_load(sync, _ARRIVED) >= 2:
                return 0, 0
            spin_pause()
    if atomic_cas(sync, _ARRIVED, 1, _SOLO):
        return BOTH, 0
    return 0, 0


@jit_inline
def team_handover(sync, role, q):
    """At the start of round ``q``: a thread running both parts hands part
    1 to a thread that asked for it, and goes on with part 0."""
    if role == BOTH and atomic_load(sync, _HANDOVER) == _ASK:
        atomic_cas(sync, _HANDOVER, _ASK, q + 1)
        return 0
    return role


@jit_inline
def team_finish(sync, role):
    """After the last round: release a thread still waiting to take part."""
    if role == BOTH and not atomic_cas(sync, _HANDOVER, 0, _FINISHED):
        atomic_cas(sync, _HANDOVER, _ASK, _FINISHED)


@jit_inline
def team_step(sync, role, phase):
    """End ``phase``: with a team role, mark this thread's part done and
    wait for the other's. Returns the next phase's number (``BOTH`` does
    not count: a thread handed part 1 counts from 0)."""
    if role == BOTH:
        return phase  # (phases count from the first met, at 0: see team_handover)
    atomic_add(sync, _DONE, 1)
    _wait_at_least(sync, _DONE, 2 * (phase + 1))
    return phase + 1


@jit_inline
def first_part(role):
    return 0 if role == BOTH else role


@jit_inline
def end_part(role):
    return 2 if role == BOTH else role + 1


@jit_parallel
def wake_pool(n):
    """A parallel region of ``n`` empty iterations. GNU OpenMP starts a
    thread's pool threads at its first region wider than the pool so far,
    and they start in that thread's floating-point mode: called with this
    thread's own mode, before its first call with denormals flushed (see
    ``runtime.threads.start_pool_threads``), so the pool keeps IEEE mode."""
    hits = 0
    for i in prange(n):
        hits += 1
    return hits
