"""``python -m fastnn`` and the ``fastnn`` script: see :mod:`fastnn.cli.app`."""
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
        # A Ctrl-C can land while this very import runs (the signal module
        # is not loaded yet at a cold start): it ends the run as any other.
        import signal
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr, flush=True)
        _exit_interrupted()

    # A Ctrl-C inside a C extension's import comes back as that import's
    # error, not as KeyboardInterrupt: NumPy's reads "Importing the numpy
    # C-extensions failed ... could not import module datetime". So note the
    # signal too.
    received = []

    def note(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    # Raised inside a callback (importlib frees its module locks through a
    # weakref callback), the KeyboardInterrupt is "unraisable": Python
    # prints its traceback and drops it. ``received`` has it; keep it quiet.
    # C code that calls Python and then PyErr_Print() prints it through
    # sys.excepthook instead: the same, for that hook.
    previous_hook, previous_excepthook = sys.unraisablehook, sys.excepthook

    def quiet(unraisable):
        if not (received and unraisable.exc_type is not None
                and issubclass(unraisable.exc_type, KeyboardInterrupt)):
            previous_hook(unraisable)

    def quiet_print(exc_type, value, tb):
        if not (received and issubclass(exc_type, KeyboardInterrupt)):
            previous_excepthook(exc_type, value, tb)

    ours = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if ours:
        signal.signal(signal.SIGINT, note)
        sys.unraisablehook, sys.excepthook = quiet, quiet_print
    try:
        # NumPy and Numba load here (a second or more on a cold disk): a
        # Ctrl-C now ends quietly with the shell's status for it.
        from .cli.app import main as cli_main
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt) or (received and isinstance(e, Exception)):
            print("\ninterrupted", file=sys.stderr, flush=True)
            _exit_interrupted()
        raise
    if ours:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # (fastnn's own hook, installed by the import, calls ``quiet`` for
        # what it does not handle: then ``quiet`` stays in the chain.)
        if sys.unraisablehook is quiet:
            sys.unraisablehook = previous_hook
        if sys.excepthook is quiet_print:
            sys.excepthook = previous_excepthook
    if received:
        # The import finished but the signal came: the error it raised was
        # taken by an optional import's fallback (``except ImportError``)
        # somewhere below; without this the run would go on as if no key had
        # been pressed.
        print("\ninterrupted", file=sys.stderr, flush=True)
        _exit_interrupted()
    try:
        code = cli_main()
    except KeyboardInterrupt:
        # Before the command's own handler: while the parser is built.
        print("\ninterrupted", file=sys.stderr, flush=True)
        _exit_interrupted()
    if code == INTERRUPTED:
        _exit_interrupted()
    return code


if __name__ == "__main__":
    sys.exit(main())
