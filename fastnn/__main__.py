"""``python -m fastnn``: see :mod:`fastnn.cli`."""
from .cli import run

run()
