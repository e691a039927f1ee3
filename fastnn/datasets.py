"""Data loading: the IDX format and the bundled MNIST files.

MNIST (the four IDX files, gzip-compressed, with their license note) ships
inside the package under ``fastnn/data/mnist``, so :func:`load_mnist` works
offline from any install.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

# IDX magic numbers (0x0803, 0x0801): unsigned bytes, 3 dimensions (images) or 1 (labels).
__all__ = ["load_mnist", "load_arrays", "read_idx", "read_csv", "target_type",
           "bundled_mnist_dir", "as_2d"]


def __dir__():
    return sorted(__all__)


IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}
# Largest decompressed IDX file accepted (MNIST train images are 47 MB).
MAX_IDX_BYTES = 2 ** 31


def bundled_mnist_dir() -> Path:
    """The directory of the MNIST files bundled with fastnn.

    Returns
    -------
    pathlib.Path
        The directory.
    """
    return Path(__file__).resolve().parent / "data" / "mnist"


def _read_bytes(path):
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as f:
                data = f.read(MAX_IDX_BYTES + 1)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupted gzip data ({e})") from None
    else:
        if os.path.getsize(path) > MAX_IDX_BYTES:
            raise ValueError(f"{path}: larger than {MAX_IDX_BYTES} bytes")
        with open(path, "rb") as f:
            data = f.read()
    if len(data) > MAX_IDX_BYTES:
        raise ValueError(f"{path}: decompresses to more than {MAX_IDX_BYTES} bytes")
    return data


def read_idx(path: str | os.PathLike, expect_magic: int | None = None) -> np.ndarray:
    """Read one IDX file (raw or gzip) into a NumPy array.

    The header (two zero bytes, a type code, the number of dimensions, then
    one big-endian uint32 per dimension) is checked against the file length
    before anything is allocated, so a corrupt or truncated file raises
    ``ValueError`` instead of allocating what its header claims.

    Parameters
    ----------
    path : str or path-like
        The file.
    expect_magic : int or None, default=None
        The magic number the header must have (2051 images, 2049 labels).

    Returns
    -------
    ndarray
        The array, of the file's type and shape.
    """
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    magic = (code << 8) | ndim
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"{path}: bad IDX magic number 0x{data[:4].hex()}")
    if expect_magic is not None and magic != expect_magic:
        raise ValueError(f"{path}: IDX magic number is {magic}, expected {expect_magic}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = dtype.itemsize
    for d in dims:
        expected *= d
    if len(data) - header != expected:
        raise ValueError(f"{path}: header says {dims} ({expected} bytes of data) but the "
                         f"file holds {len(data) - header} bytes (truncated or corrupted)")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def _find(directory, stem):
    for name in (stem + ".gz", stem):
        p = Path(directory) / name
        if p.is_file():
            return p
    raise FileNotFoundError(f"MNIST file {stem}[.gz] not found in {directory}")


def load_mnist(path: str | os.PathLike | None = None) -> tuple:
    """Return ``(x_train, y_train), (x_test, y_test)``.

    Images are float32 ``(N, 784)`` scaled to [0, 1]; labels are int64.
    ``path`` (or the ``FASTNN_DATA`` environment variable) names a directory
    holding the four IDX files, gzip-compressed or raw; by default the copy
    bundled with fastnn is used.

    Parameters
    ----------
    path : str, path-like or None, default=None
        A directory of the four IDX files.

    Returns
    -------
    tuple
        ``(x_train, y_train), (x_test, y_test)``.
    """
    directory = path or os.environ.get("FASTNN_DATA") or bundled_mnist_dir()
    if not Path(directory).is_dir():
        raise FileNotFoundError(f"MNIST directory {directory} does not exist")
    out = []
    for split in ("train", "test"):
        imgs = read_idx(_find(directory, MNIST_FILES[f"{split}_images"]), IDX_IMAGES_MAGIC)
        labels = read_idx(_find(directory, MNIST_FILES[f"{split}_labels"]), IDX_LABELS_MAGIC)
        if imgs.ndim != 3 or labels.ndim != 1:
            raise ValueError(f"{split}: unexpected IDX shapes {imgs.shape}, {labels.shape}")
        if imgs.shape[0] != labels.shape[0]:
            raise ValueError(f"{split}: {imgs.shape[0]} images but {labels.shape[0]} labels")
        if labels.size and labels.max() > 9:
            raise ValueError(f"{split}: labels outside 0..9")
        x = imgs.reshape(imgs.shape[0], -1).astype(np.float32)
        x /= np.float32(255.0)
        out.append((x, labels.astype(np.int64)))
    return tuple(out)


def load_arrays(path: str | os.PathLike, header: bool | None = None) -> tuple:
    """Training (and, if present, test) arrays from a ``.npz`` or ``.csv``
    file, or MNIST IDX files from a directory.

    Returns ``((x, y), test)`` where ``test`` is ``(x_test, y_test)`` or
    ``None``.

    * directory: the four MNIST IDX files (see :func:`load_mnist`);
    * ``.npz``: arrays ``x_train``, ``y_train`` and optionally ``x_test``,
      ``y_test``; or ``x``, ``y`` (never unpickled);
    * ``.csv``: one row per sample, numbers only, the label or target in the
      last column (read by :func:`read_csv`; ``header`` as there).

    Parameters
    ----------
    path : str or path-like
        A directory, an ``.npz`` or a ``.csv`` file.
    header : bool or None, default=None
        A CSV file's header row, as :func:`read_csv` takes it.

    Returns
    -------
    tuple
        ``((x, y), test)``, ``test`` being ``(x_test, y_test)`` or None.
    """
    p = Path(path)
    if p.is_dir():
        return load_mnist(p)
    if not p.is_file():
        raise FileNotFoundError(f"data path {path} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except Exception as e:
            raise ValueError(f"{path}: not a readable .npz file ({e})") from None
        for xk, yk in (("x_train", "y_train"), ("x", "y"), ("X", "y")):
            if xk in arrays and yk in arrays:
                train = (as_2d(arrays[xk], path, xk), arrays[yk])
                test = None
                if "x_test" in arrays and "y_test" in arrays:
                    test = (as_2d(arrays["x_test"], path, "x_test"), arrays["y_test"])
                return train, test
        raise ValueError(f"{path}: expected arrays 'x_train' and 'y_train' (or 'x' and 'y'), "
                         f"found {sorted(arrays)}")
    if suffix == ".csv":
        data = read_csv(p, header)
        if data.shape[1] < 2:
            raise ValueError(f"{path}: need at least one feature column and a label column")
        y = data[:, -1]
        if target_type(y) in ("binary", "multiclass") and (y >= 0).all():
            y = y.astype(np.int64)  # class labels (see target_type)
        return (data[:, :-1], y), None
    raise ValueError(f"{path}: unsupported data file (use a directory of IDX files, "
                     f".npz or .csv)")


def target_type(y: ArrayLike) -> str:
    """What kind of target ``y`` is, by scikit-learn's rule
    (``sklearn.utils.multiclass.type_of_target``), written out so that no
    scikit-learn is needed:

    * ``"continuous"`` / ``"continuous-multioutput"``: floats, at least one
      of them not a whole number (``151.0`` is a whole number);
    * ``"binary"``: one column of at most two distinct values;
    * ``"multiclass"``: one column of more than two distinct whole numbers
      (or strings);
    * ``"multilabel-indicator"``: several columns of 0/1;
    * ``"multiclass-multioutput"``: several columns of whole numbers.

    A column of whole numbers is a class label by this rule, however many
    distinct values it has: ``fastnn train`` asks for ``--task`` when there
    are more classes than a fifth of the rows.

    Parameters
    ----------
    y : array-like
        The target.

    Returns
    -------
    str
        One of the names above, or ``"unknown"`` (empty, or more than 2-D).
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2) or y.size == 0:
        return "unknown"
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        return "continuous" if y.ndim == 1 else "continuous-multioutput"
    if y.ndim == 2:
        values = np.unique(y)
        if len(values) <= 2 and set(values.tolist()) <= {0, 1}:
            return "multilabel-indicator"
        return "multiclass-multioutput"
    return "binary" if len(np.unique(y)) <= 2 else "multiclass"


def as_2d(x: np.ndarray, path: str | os.PathLike, name: str) -> np.ndarray:
    """Samples as rows: images (n, h, w) flattened, uint8 pixels scaled to
    [0, 1] as load_mnist does; anything else not 2-D is an error.

    Parameters
    ----------
    x : ndarray
        The samples.
    path : str or path-like
        The file they came from (for the error message).
    name : str
        Their name in it (for the error message).

    Returns
    -------
    ndarray of shape (n_samples, n_features)
        The samples as rows.
    """
    if x.ndim > 2:
        x = x.reshape(x.shape[0], -1)
    if x.ndim != 2:
        raise ValueError(f"{path}: '{name}' must be 2-D (samples, features), got {x.shape}")
    if x.dtype == np.uint8:  # images: scale to [0, 1] as load_mnist does
        x = x.astype(np.float32) / np.float32(255.0)
    return x


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


CSV_BLOCK_ROWS = 65536  # rows parsed per NumPy conversion; memory is whole blocks


def read_csv(path: str | os.PathLike, header: bool | None = None) -> np.ndarray:
    """A numeric CSV file as a float64 matrix (one row per line).

    The rules (Python's ``csv`` module, RFC 4180 quoting):

    * comma-separated; blank lines are skipped; every row has the first
      row's number of cells;
    * text is UTF-8 (a byte-order mark is allowed); a file that is not
      valid UTF-8 is read as Latin-1 (numbers are ASCII either way: only a
      header's text can differ);
    * ``header=True``: the first row is a header (skipped); ``False``: it
      is data; ``None`` (default): a header only when that is unambiguous,
      i.e. no cell of the first row is a number or empty, and the next row
      is data. A first row with a blank or a number among its names is
      data, and its bad cell is an error, not silently dropped;
    * an empty cell, a non-number or a non-finite number (nan, inf) is an
      error naming the file, line and column; so is a file without data
      rows.

    The file is read as a stream, in blocks of rows converted as they come:
    reading holds the result about twice (the blocks, then the matrix).
    NumPy's C reader (``np.loadtxt``) converts the blocks; whatever it
    objects to (a bad or non-finite cell, a ragged row, a blank-looking
    line) is read again by the ``csv`` module under the rules above, which
    either accepts it or names the cell.

    Parameters
    ----------
    path : str or path-like
        The file.
    header : bool or None, default=None
        Whether the first row is a header (None: decide as above).

    Returns
    -------
    ndarray of float64, shape (rows, columns)
        The numbers.
    """
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            x = _read_csv_fast(path, header, encoding)
            return x if x is not None else _read_csv(path, header, encoding)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")


def _first_rows(path, encoding):
    """The first two non-blank rows of a CSV file (stripped cells) and the
    physical lines up to the end of the first."""
    import csv

    rows, through = [], 0
    with open(path, newline="", encoding=encoding) as f:
        reader = csv.reader(f)
        for r in reader:
            if r and any(c.strip() for c in r):
                rows.append([c.strip() for c in r])
                through = through or reader.line_num
                if len(rows) == 2:
                    break
    return rows, through


def _read_csv_fast(path, header, encoding):
    """read_csv by ``np.loadtxt`` in blocks, or None where the exact reader
    must decide (an error to locate, or a line loadtxt reads otherwise)."""
    import warnings

    first, through = _first_rows(path, encoding)
    if not first:
        return None
    if header is None:
        header = _is_header(first[0], first[1] if len(first) > 1 else None)
    blocks, width = [], len(first[1 if header and len(first) > 1 else 0])
    try:
        with open(path, newline="", encoding=encoding) as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # loadtxt's "no data" at the end
            for _ in range(through if header else 0):
                f.readline()
            while True:
                block = np.loadtxt(f, np.float64, comments=None, delimiter=",", quotechar='"',
                                   max_rows=CSV_BLOCK_ROWS, ndmin=2)
                if block.shape[0] == 0:
                    break
                if block.shape[1] != width or not np.isfinite(block).all():
                    return None
                blocks.append(block)
    except (ValueError, TypeError):
        return None
    if not blocks:
        return None
    if len(blocks) == 1:
        return blocks[0]
    out = np.concatenate(blocks)
    blocks.clear()
    return out


def _read_csv(path, header, encoding):
    import csv

    with open(path, newline="", encoding=encoding) as f:
        reader = csv.reader(f)
        rows, lines = [], []
        blocks = []
        width = first_line = None
        pending = []  # the first two data-looking rows, until the header is decided

        def convert():
            blocks.append(_csv_block(path, rows, lines, first_row=not blocks and not header))
            rows.clear()
            lines.clear()

        for r in reader:
            if not (r and any(c.strip() for c in r)):
                continue
            r = [c.strip() for c in r]
            if header is None and len(pending) < 2:
                pending.append((r, reader.line_num))
                if len(pending) < 2:
                    continue
                header = _is_header(pending[0][0], pending[1][0])
                for row, line in pending[1 if header else 0:]:
                    width, first_line = _add_csv_row(path, rows, lines, row, line, width,
                                                     first_line)
                continue
            if header and not pending:
                pending.append((r, reader.line_num))  # the header: skipped
                continue
            width, first_line = _add_csv_row(path, rows, lines, r, reader.line_num, width,
                                             first_line)
            if len(rows) == CSV_BLOCK_ROWS:
                convert()
        if header is None and pending:  # a one-row file
            header = _is_header(pending[0][0], None)
            if not header:
                width, first_line = _add_csv_row(path, rows, lines, *pending[0], width,
                                                 first_line)
        if rows:
            convert()
    if not blocks:
        raise ValueError(f"{path}: no data rows")
    if len(blocks) == 1:
        return blocks[0]
    out = np.concatenate(blocks)
    blocks.clear()
    return out


def _is_header(first, second):
    return (all(c and not _is_number(c) for c in first)
            and (second is None or all(_is_number(c) for c in second)))


def _add_csv_row(path, rows, lines, row, line, width, first_line):
    if width is None:
        width, first_line = len(row), line
    elif len(row) != width:
        raise ValueError(f"{path}: line {line} has {len(row)} columns, expected {width} "
                         f"(as line {first_line})")
    rows.append(row)
    lines.append(line)
    return width, first_line


def _csv_block(path, rows, lines, first_row):
    """``rows`` (lists of cell text) as a float64 matrix; a bad cell is an
    error naming its line and column."""
    try:
        block = np.array(rows, dtype=np.float64)
    except ValueError:
        block = None
    if block is not None and np.isfinite(block).all():
        return block
    for i, (r, line) in enumerate(zip(rows, lines)):
        for j, c in enumerate(r):
            try:
                v = float(c)
            except ValueError:
                what = "an empty cell" if not c else f"non-numeric value {c!r}"
                hint = (" (if it is a header row, say so: header=True, or --csv-header yes)"
                        if i == 0 and first_row else "")
                raise ValueError(f"{path}: line {line}, column {j + 1}: {what}{hint}") from None
            if not np.isfinite(v):
                raise ValueError(f"{path}: line {line}, column {j + 1}: non-finite value {c!r} "
                                 f"(the inputs and targets must be finite numbers)")
    raise ValueError(f"{path}: unreadable numbers")  # np.array refused what float() takes
