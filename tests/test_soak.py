"""bench/soak.py in a short run. (Its own file, which pytest runs after the
kernel suites: on a cold cache it then loads what they compiled instead of
compiling every dtype and head itself, ~25 s of a CI run.)"""


def test_soak_runs_clean(capsys):
    """bench/soak.py: every bad call fails cleanly, save/load keeps the
    predictions, nothing is left in its scratch directory (a short run)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "soak.py"
    spec = importlib.util.spec_from_file_location("soak", path)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    rc = soak.main(["--cycles", "60", "--warmup", "20", "--seed", "5"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "failures: 0" in out and "none" in out
