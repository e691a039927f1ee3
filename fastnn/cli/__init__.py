"""The ``fastnn`` command line (``python -m fastnn``)."""
