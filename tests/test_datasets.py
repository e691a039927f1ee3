"""IDX reading and the bundled MNIST copy."""
import gzip
import hashlib
import struct

import numpy as np
import pytest

import fastnn
from fastnn import datasets


@pytest.fixture(scope="module")
def mnist():
    return fastnn.load_mnist()


def test_bundled_files_are_the_genuine_set():
    d = datasets.bundled_mnist_dir()
    sums = dict(line.split()[::-1] for line in (d / "SHA256SUMS").read_text().splitlines())
    assert len(sums) == 4
    for name, digest in sums.items():
        assert hashlib.sha256((d / name).read_bytes()).hexdigest() == digest, name
    assert "Creative Commons" in (d / "README.md").read_text()


def test_load_mnist_shapes_and_contents(mnist):
    (x, y), (xt, yt) = mnist
    assert x.shape == (60000, 784) and xt.shape == (10000, 784)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(yt).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(x.mean() * 255 - 33.318) < 1e-3


def _write_idx(path, arr, magic_code=0x08, compress=False):
    header = struct.pack(">HBB", 0, magic_code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if compress:
        data = gzip.compress(data)
    path.write_bytes(data)
    return data


def _write_small_mnist(d, compress):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 28, 28))
    labels = np.array([3, 1, 4, 1, 5])
    for split in ("train", "t10k"):
        suffix = ".gz" if compress else ""
        _write_idx(d / f"{split}-images-idx3-ubyte{suffix}", imgs, compress=compress)
        _write_idx(d / f"{split}-labels-idx1-ubyte{suffix}", labels, compress=compress)
    return imgs, labels


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_from_a_directory_raw_or_gzip(tmp_path, compress):
    imgs, labels = _write_small_mnist(tmp_path, compress)
    (x, y), (xt, yt) = fastnn.load_mnist(tmp_path)
    assert np.array_equal(x, imgs.reshape(5, -1).astype(np.float32) / 255)
    assert np.array_equal(yt, labels)


def test_fastnn_data_environment_variable(tmp_path, monkeypatch):
    _write_small_mnist(tmp_path, False)
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    (x, _), _ = fastnn.load_mnist()
    assert x.shape == (5, 784)


def test_missing_directory_and_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fastnn.load_mnist(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="train-images"):
        fastnn.load_mnist(tmp_path)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_rejects_corrupted_header(tmp_path, compress):
    p = tmp_path / "x.idx"
    data = bytearray(_write_idx(p, np.zeros((2, 3, 3)), compress=False))
    data[2] = 0x42  # unknown type code
    p.write_bytes(gzip.compress(bytes(data)) if compress else bytes(data))
    with pytest.raises(ValueError, match="magic"):
        datasets.read_idx(p)


def test_idx_rejects_wrong_magic_for_role(tmp_path):
    p = tmp_path / "labels.idx"
    _write_idx(p, np.zeros(4))
    with pytest.raises(ValueError, match="expected 2051"):
        datasets.read_idx(p, 2051)


def test_idx_rejects_truncated_and_oversized_claims(tmp_path):
    p = tmp_path / "x.idx"
    data = _write_idx(p, np.zeros((4, 28, 28)))
    p.write_bytes(data[:-1])
    with pytest.raises(ValueError, match="truncated"):
        datasets.read_idx(p)
    # A header claiming 10^9 images of 28x28 must fail on the size check,
    # not try to allocate 784 GB.
    p.write_bytes(struct.pack(">HBBIII", 0, 8, 3, 10 ** 9, 28, 28) + b"\0" * 100)
    with pytest.raises(ValueError, match="header says"):
        datasets.read_idx(p)
    p.write_bytes(b"\0\0")
    with pytest.raises(ValueError, match="too short"):
        datasets.read_idx(p)


def test_idx_rejects_broken_gzip(tmp_path):
    p = tmp_path / "x.idx.gz"
    data = gzip.compress(b"\0\0\x08\x01" + struct.pack(">I", 1000) + bytes(1000))
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="gzip"):
        datasets.read_idx(p)


# --- CSV: the rules of datasets.read_csv ------------------------------------
@pytest.mark.parametrize("text, header, expected", [
    ("1,2,0\n3,4,1\n", None, [[1, 2, 0], [3, 4, 1]]),          # no header
    ("x1,x2,y\n1,2,0\n3,4,1\n", None, [[1, 2, 0], [3, 4, 1]]),  # unambiguous header
    ("\ufeffx1,x2,y\r\n1,2,0\r\n\r\n3,4,1\r\n", None, [[1, 2, 0], [3, 4, 1]]),  # BOM, CRLF, blank
    ('"x 1","x,2",y\n"1",2,0\n', None, [[1, 2, 0]]),            # RFC 4180 quoting
    ("1,2,0\n3,4,1\n", True, [[3, 4, 1]]),                      # header requested
    ("1e3, -2.5 ,0\n", False, [[1000, -2.5, 0]]),
    ("1,2\n  ,  \n3,4\n", None, [[1, 2], [3, 4]]),               # a blank-looking line
    ("a,b\n1,2\n3,4\n5,6\n7,8\n", None, [[1, 2], [3, 4], [5, 6], [7, 8]]),
    ("1,2\n3,4\n5,6\n7,8\n9,10\n", True, [[3, 4], [5, 6], [7, 8], [9, 10]]),
])
@pytest.mark.parametrize("block_rows", [65536, 2])
def test_read_csv_accepts(tmp_path, monkeypatch, text, header, expected, block_rows):
    monkeypatch.setattr(datasets, "CSV_BLOCK_ROWS", block_rows)
    p = tmp_path / "d.csv"
    p.write_text(text, encoding="utf-8", newline="")
    np.testing.assert_array_equal(datasets.read_csv(p, header), expected)


def test_read_csv_streams_holding_about_twice_the_result(tmp_path):
    """A file read in blocks: at most ~2x the matrix is ever allocated (the
    whole text and its rows of cells were held at once: ~16x)."""
    import tracemalloc

    x = np.random.default_rng(0).standard_normal((100_000, 5))
    p = tmp_path / "big.csv"
    np.savetxt(p, x, fmt="%.17g", delimiter=",")
    tracemalloc.start()
    try:
        got = datasets.read_csv(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, x)
    assert peak < 2.5 * x.nbytes, peak / x.nbytes


def test_read_csv_latin1_header_is_read(tmp_path):
    p = tmp_path / "l.csv"
    p.write_bytes("température,x,y\n1,2,0\n".encode("latin-1"))
    np.testing.assert_array_equal(datasets.read_csv(p), [[1, 2, 0]])


@pytest.mark.parametrize("text, header, words", [
    ("a,,label\n1,2,0\n", None, ["line 1, column 1", "'a'", "header"]),  # blank: not a header
    ("1,2,0\n4,,1\n", None, ["line 2, column 2", "empty cell"]),
    ("1,2,0\n4,x,1\n", None, ["line 2, column 2", "'x'"]),
    ("1,2,0\n\n4,5\n", None, ["line 3 has 2 columns, expected 3"]),
    ("", None, ["no data rows"]),
    ("x,y\n", None, ["no data rows"]),
    ("x,y\n", False, ["line 1, column 1"]),
    ("1,2\n3,nan\n", None, ["line 2, column 2", "non-finite value 'nan'"]),
    ("1,2\n3,4\n5,6\n-inf,8\n", None, ["line 4, column 1", "non-finite value '-inf'"]),
    ("1,2\n3,4\n5,6\n7,8\n9\n", None, ["line 5 has 1 columns, expected 2"]),
    ("1,2\n3,4\n5,6\n7,1e999\n", None, ["line 4, column 2", "non-finite"]),
])
@pytest.mark.parametrize("block_rows", [65536, 2])
def test_read_csv_errors_name_file_line_and_column(tmp_path, monkeypatch, text, header, words,
                                                   block_rows):
    monkeypatch.setattr(datasets, "CSV_BLOCK_ROWS", block_rows)
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(ValueError) as e:
        datasets.read_csv(p, header)
    for w in [str(p)] + words:
        assert w in str(e.value)


def test_load_arrays_csv_splits_the_label_column(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("f1,f2,label\n0.5,1,2\n0.25,3,0\n")
    (x, y), test = datasets.load_arrays(p)
    assert test is None and y.dtype == np.int64 and y.tolist() == [2, 0]
    np.testing.assert_array_equal(x, [[0.5, 1], [0.25, 3]])
