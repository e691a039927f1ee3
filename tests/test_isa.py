"""The kernels compiled for another instruction set than the host's.

The tile shapes are chosen per ISA at import (kernels/layout.py: AVX-512
8 x 48, AVX2 6 x 16 float32), so an AVX-512 host running the suite never
executes the AVX2 tiles that most laptops and cloud VMs run. Here the
matmul suite (every tile driver: serial, parallel, packed, narrow,
remainder columns) and the prediction tests (first layer over active
columns) run again in a process whose kernels are built for
AVX2 (fastnn.integrations.benchmark.avx2_environment: the host's CPU features with every
AVX-512 one off). On an AVX2 host the suite itself already runs AVX2 code.

Compiling the kernels a second time takes minutes, so it runs only with
``pytest --other-isa`` (CI runs it as a step of its own).
"""
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import early, early_env, early_tmp

from fastnn.integrations import benchmark
from fastnn.kernels import layout


@early("test_the_matmul_suite_passes_on_avx2_code", seconds=200)
def _avx2_suite():
    if layout.TARGET_ISA != "AVX-512":
        return f"the suite already runs {layout.TARGET_ISA} code here"
    # A cache of its own: the same cold compile on every machine, and
    # nothing left in the user's per-user AVX2 cache.
    env = benchmark.avx2_environment(early_env(NUMBA_CACHE_DIR=early_tmp("avx2-")))
    if env is None:
        return "this CPU has no AVX2"
    probe = subprocess.run(
        [sys.executable, "-c", "from fastnn.kernels import layout as l; "
                               "print(l.TARGET_ISA, l.NR, l.MR32, l.MR64)"],
        env=env, capture_output=True, text=True, timeout=300)
    here = Path(__file__).resolve().parent
    # The matmul suite, prediction's first layer over active columns (its
    # tiles and column listing are shaped per ISA too) and training's
    # row-split batches (every product on the serial tiles).
    tests = [str(here / "test_matmul.py")] + [
        f"{here / 'test_sparse_kernels.py'}::{t}"
        for t in ("test_predict_rows_matches_the_reference",
                  "test_predict_rows_counts_nan_and_inf_of_every_row",
                  "test_predict_rows_chooses_row_or_union_tiles_per_block",
                  "test_active_columns_list_and_check_rows_and_groups",
                  "test_compress_nonzero8_lists_the_nonzero_columns")] + [
        f"{here / 'test_numpy_engine.py'}::test_row_split_batches_match_the_numpy_engine"]
    # (float32 only for the drivers: their AVX2 tiles differ from float64's
    # by the vector width alone, and each dtype compiles the drivers again.)
    # No compile helpers: they would compile every kernel, for both
    # dtypes, on both cores, where these tests call a fraction of them.
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           "--no-compile-helpers",
                           "-k", "float32 or not (predict or row_split)", *tests], env=env,
                          capture_output=True, text=True, timeout=1200)
    return probe, proc


@pytest.mark.other_isa
def test_the_matmul_suite_passes_on_avx2_code():
    result = _avx2_suite.result()
    if isinstance(result, str):
        pytest.skip(result)
    probe, proc = result
    assert probe.stdout.split() == ["AVX2", "16", "6", "3"], probe.stderr[-2000:]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
