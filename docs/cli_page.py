"""Build helpers: the command line's --help texts (cli.rst includes them),
the gallery examples' arguments."""
from pathlib import Path

COMMANDS = ("train", "evaluate", "predict", "export", "compile", "bench")


def write(srcdir):
    from fastnn.cli import app

    parser = app.build_parser()
    out = Path(srcdir) / "_generated"
    out.mkdir(exist_ok=True)
    (out / "fastnn.txt").write_text(parser.format_help())
    sub_action = next(a for a in parser._actions if hasattr(a, "choices") and
                      isinstance(a.choices, dict))
    for name in COMMANDS:
        (out / f"fastnn_{name}.txt").write_text(sub_action.choices[name].format_help())


def gallery_argv(gallery_conf, script_vars):
    """Arguments for a gallery example: the tutorial's MNIST part on one
    short epoch, the others their defaults."""
    if script_vars["src_file"].endswith("from_scratch.py"):
        return ["--epochs", "1", "--rows", "10000"]
    return []
