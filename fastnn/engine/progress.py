"""What a fit shows while it runs: a line per epoch (``verbose``), and for
``progress=True`` a bar -- in Jupyter, a display updated in place; on a
terminal, a ``tqdm`` bar over the epochs, or without tqdm a text bar over
each epoch's batches; nothing when stderr is a file or a pipe.
"""
import html
import math
import sys
import time

__all__ = ["NotebookBar", "ProgressBar", "close_bar", "epoch_bar", "epoch_printer",
           "in_notebook", "progress_reporter"]

# The keys of an epoch's record that a bar shows.
SHOWN = ("loss", "accuracy", "val_loss", "val_accuracy")


def epoch_printer(classify, stream=None):
    """``report(epoch, record)`` printing one line per epoch (``verbose``)."""
    def report(epoch, rec):
        line = f"epoch {epoch:3d}  loss {rec['loss']:.4f}"
        if classify:
            line += f"  acc {rec['accuracy']:.4f}"
        if "val_loss" in rec:
            line += f"  val_loss {rec['val_loss']:.4f}"
            line += f"  val_acc {rec['val_accuracy']:.4f}" if classify else ""
        print(line + f"  {rec['seconds']:.2f}s", file=stream or sys.stdout, flush=True)

    return report


def epoch_bar(progress, max_epochs):
    """For ``progress=True``: a bar over the epochs, with ``set_postfix``,
    ``update`` and ``close`` as tqdm's -- a :class:`NotebookBar` in a
    Jupyter kernel, else a ``tqdm.auto`` bar if tqdm is installed (drawn
    only when stderr is a terminal). None otherwise: without tqdm,
    :class:`ProgressBar` draws the batches of each epoch instead."""
    if progress is not True:
        return None
    if in_notebook():
        return NotebookBar(max_epochs)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=max_epochs, unit="epoch", desc="fastnn", disable=None, leave=True)


def close_bar(bar, error=None):
    """Closes an :func:`epoch_bar`, telling a notebook bar the ``error``
    that ended the fit, if one did."""
    if isinstance(bar, NotebookBar):
        bar.close(error)
    elif bar is not None:
        bar.close()


def in_notebook():
    """True inside a Jupyter kernel (JupyterLab, Notebook, VS Code, Colab),
    as ``tqdm.auto`` decides; False in a terminal IPython or plain Python."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:
        return False


class NotebookBar:
    """An epoch bar for Jupyter: one display output holding an HTML
    ``<progress>`` and a text line, replaced in place as epochs finish.

    A saved notebook keeps a display's last state, so it shows the finished
    (or stopped) bar; a tqdm widget saves the text it had when first drawn,
    "0%". No ipywidgets needed."""

    # Redraws at most this often (plus the last): a fit of many short epochs
    # would otherwise send a display message per epoch.
    MIN_INTERVAL = 0.2

    def __init__(self, total, desc="fastnn"):
        from IPython.display import display

        self.total, self.desc, self.n, self.postfix = total, desc, 0, {}
        self.t0 = self.drawn = time.perf_counter()
        self.handle = display(self._bundle("", None), raw=True, display_id=True)

    def set_postfix(self, values, refresh=False):
        self.postfix = dict(values)

    def update(self, n=1):
        self.n += n
        now = time.perf_counter()
        if now - self.drawn >= self.MIN_INTERVAL:
            self.drawn = now
            self.handle.update(self._bundle("", None), raw=True)

    def close(self, error=None):
        if error is not None:
            status = f"stopped by {type(error).__name__} in epoch {self.n + 1}: "
        elif self.n < self.total:
            status = "stopped early: "
        else:
            status = ""
        self.handle.update(self._bundle(status, error), raw=True)

    def _text(self, status):
        seconds = time.perf_counter() - self.t0
        values = "".join(f"  {k} {v}" for k, v in self.postfix.items())
        return (f"{self.desc}: {status}{self.n}/{self.total} epochs "
                f"[{_clock(seconds)}]{values}")

    def _bundle(self, status, error):
        text = self._text(status)
        colour = "#c62828" if error is not None else "inherit"
        page = (f'<div style="font-family:monospace">'
                f'<progress value="{self.n}" max="{max(self.total, 1)}" '
                f'style="width:16em;vertical-align:middle"></progress> '
                f'<span style="color:{colour}">{html.escape(text)}</span></div>')
        return {"text/plain": text, "text/html": page}


def _clock(seconds):
    minutes, seconds = divmod(int(math.floor(seconds)), 60)
    return f"{minutes:02d}:{seconds:02d}"


def progress_reporter(progress):
    """The ``report(done, total)`` called between chunks of batches for a
    ``progress`` value: a callable as given, a :class:`ProgressBar` for
    True on a terminal, else None."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return ProgressBar() if sys.stderr.isatty() else None
    if callable(progress):
        return progress
    raise TypeError(f"progress must be True, False or a callable f(done, total), "
                    f"got {progress!r}")


class ProgressBar:
    """A one-line text progress bar on stderr, redrawn in place."""

    def __init__(self, width=30, stream=None):
        self.width = width
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()

    def __call__(self, done, total):
        if done >= total:  # erase the bar: the caller prints the epoch's line
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            return
        filled = self.width * done // total
        elapsed = time.perf_counter() - self.t0
        eta = elapsed * (total - done) / done if done else 0.0
        self.stream.write(f"\r  [{'#' * filled}{'.' * (self.width - filled)}] "
                          f"{done}/{total} batches  {elapsed:5.1f}s  eta {eta:5.1f}s\x1b[K")
        self.stream.flush()
