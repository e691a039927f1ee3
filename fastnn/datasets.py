"""Data loading: the IDX format and the bundled MNIST files.

MNIST (the four IDX files, gzip-compressed, with their license note) ships
inside the package under ``fastnn/data/mnist``, so :func:`load_mnist` works
offline from any install.
"""
import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

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


def bundled_mnist_dir():
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


def read_idx(path, expect_magic=None):
    """Read one IDX file (raw or gzip) into a NumPy array.

    The header (two zero bytes, a type code, the number of dimensions, then
    one big-endian uint32 per dimension) is checked against the file length
    before anything is allocated, so a corrupt or truncated file raises
    ``ValueError`` instead of allocating what its header claims.
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


def load_mnist(path=None):
    """Return ``(x_train, y_train), (x_test, y_test)``.

    Images are float32 ``(N, 784)`` scaled to [0, 1]; labels are int64.
    ``path`` (or the ``FASTNN_DATA`` environment variable) names a directory
    holding the four IDX files, gzip-compressed or raw; by default the copy
    bundled with fastnn is used.
    """
    directory = path or os.environ.get("FASTNN_DATA") or bundled_mnist_dir()
    if not Path(directory).is_dir():
        raise FileNotFoundError(f"MNIST directory {directory} does not exist")
    out = []
    for split in ("train", "test"):
        imgs = read_idx(_find(directory, MNIST_FILES[f"{split}_images"]), 2051)
        labels = read_idx(_find(directory, MNIST_FILES[f"{split}_labels"]), 2049)
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
