"""``python -m fastnn`` and the ``fastnn`` script: see :mod:`fastnn.cli`."""
import os
import sys

INTERRUPTED = 130  # the shell's status for a process ended by Ctrl-C


def _exit_interrupted():
    # os._exit, not sys.exit: when the SIGINT landed inside an import, the
    # interpreter remembers an "unhandled KeyboardInterrupt" and, at a normal
    # exit, kills itself with SIGINT (status -2 instead of 130) however the
    # exception was handled. Every file fastnn writes is closed by now.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(INTERRUPTED)


def main():
    try:
        # NumPy and Numba load here (a second or more on a cold disk): a
        # Ctrl-C now ends quietly with the shell's status for it.
        from .cli import main as cli_main
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr, flush=True)
        _exit_interrupted()
    code = cli_main()
    if code == INTERRUPTED:
        _exit_interrupted()
    return code


if __name__ == "__main__":
    sys.exit(main())
