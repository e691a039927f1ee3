"""The model file: a ``.npz`` written atomically, read without unpickling.

Format (version ``FORMAT_VERSION``): uncompressed ``.npy`` members
``fastnn_format`` (int), ``layers`` (int64), ``hidden``, ``output``,
``dtype`` (strings), and ``W{l}`` (fan_in, fan_out), ``b{l}`` (fan_out,) per
layer, in the model's dtype; the loss settings that differ from their
defaults, ``delta`` and ``label_smoothing`` (float64 scalars).
"""
import os
import stat
import tempfile
import zipfile
import zlib

import numpy as np

from . import validation

FORMAT_VERSION = 1
LOSS_SETTINGS = ("delta", "label_smoothing")  # optional scalars


def write_model(path, description, weights, biases):
    """Write the model to ``path`` atomically: a temporary file in the same
    directory, flushed to disk, then renamed over ``path``."""
    path = os.fspath(path)
    arrays = {
        "fastnn_format": np.array(FORMAT_VERSION),
        "layers": np.array(description["layers"], dtype=np.int64),
        "hidden": np.array(description["hidden"]),
        "output": np.array(description["output"]),
        "dtype": np.array(description["dtype"]),
    }
    for key in LOSS_SETTINGS:
        if key in description:
            arrays[key] = np.array(float(description[key]))
    for l, (W, b) in enumerate(zip(weights, biases)):
        arrays[f"W{l}"] = W
        arrays[f"b{l}"] = b
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _kind(mode):
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def regular_source(path, what="model file"):
    """``path`` if it names a regular file (or a link to one); else an error
    naming it: FileNotFoundError, IsADirectoryError, or ValueError for a
    device, FIFO or socket (read before any data: /dev/zero would be read
    until memory runs out, a FIFO would block)."""
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{what} {path} is a directory")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{what} {path} is {_kind(mode)}, not a regular file: refused")
    return path


def regular_destination(path):
    """Where writing ``path`` goes: ``path`` itself (a new name or a regular
    file), or the regular file a symbolic link at ``path`` names (written
    in its place, atomically). A directory, device, FIFO or socket there is
    refused with ValueError naming ``path``: replacing it with a file would
    lose what a reader expects (and, as root, a system device)."""
    path = os.fspath(path)
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        if target != path and not os.path.isdir(os.path.dirname(target) or "."):
            raise ValueError(f"cannot write {path}: it links to {target}, whose directory "
                             f"does not exist") from None
        return target
    if not stat.S_ISREG(mode):
        raise ValueError(f"cannot write {path}: it is {_kind(mode)}"
                         + (f" (through the link to {target})" if target != path else "")
                         + "; give the name of a regular file")
    return target


def atomic_write(path, write):
    """``write(f)`` into a temporary file beside ``path`` (named with this
    process's id), flushed to disk, then renamed over ``path``: a full disk,
    an interrupt or a kill leaves the previous file whole, never a partial
    one. A symbolic link is followed: its target is what is replaced. A
    destination that is not a regular file is refused
    (:func:`regular_destination`). Errors name ``path``, not the temporary
    file."""
    path = os.fspath(path)
    target = regular_destination(path)
    d = os.path.dirname(os.path.abspath(target))
    remove_stale_temporaries(d)
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=f"{TEMP_PREFIX}{os.getpid()}-",
                                   suffix=TEMP_SUFFIX)
    except OSError as e:
        raise OSError(e.errno, f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the permissions
        # any new file gets under the process's umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(e.errno, f"cannot write {path}: {e.strerror}") from None
        raise


TEMP_PREFIX = ".fastnn-"
TEMP_SUFFIX = ".npz.tmp"


def remove_stale_temporaries(directory):
    """Delete temporary files of saves whose process no longer exists (a
    save killed with SIGKILL cannot clean up after itself). Their names
    carry the writer's process id."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
            continue
        pid = name[len(TEMP_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def read_model(path):
    """``(description, weights, biases)`` of a file written by
    :func:`write_model`.

    Never unpickles, and checks before allocating: the file must be a zip of
    uncompressed ``.npy`` members whose sizes fit in the file; every array's
    header (shape, dtype) is checked against the format and the architecture
    before its data is read; the format version, names and values (finite)
    are checked too. Anything else raises ``ValueError`` naming the file.
    """
    path = regular_source(path)
    try:
        with zipfile.ZipFile(path) as zf:
            return _read_zip(zf, path)
    except ValueError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError,
            RuntimeError, NotImplementedError) as e:
        raise ValueError(f"{path}: not a readable fastnn model file ({e})") from None


def _read_zip(zf, path):
    model = _ZipModel(zf, path)
    description, sizes, dtype = model.description()
    return (description,) + model.parameters(sizes, dtype)


class _ZipModel:
    """A model file's members, each checked before any of its data is read."""

    def __init__(self, zf, path):
        self.zf, self.path = zf, path
        infos = {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise self.bad(f"not a fastnn model file (member {info.filename!r})")
            if info.compress_type != zipfile.ZIP_STORED:
                raise self.bad("not a fastnn model file (compressed members)")
            if info.file_size != info.compress_size:
                raise self.bad("truncated or corrupted (a member's sizes disagree)")
            if info.filename[:-4] in infos:
                raise self.bad(f"corrupted (member {info.filename!r} appears twice)")
            infos[info.filename[:-4]] = info
        if sum(i.compress_size for i in infos.values()) > os.path.getsize(path):
            raise self.bad("truncated or corrupted (members larger than the file)")
        self.infos = infos

    def bad(self, msg):
        return ValueError(f"{self.path}: {msg}")

    def read(self, name, shape=None, kinds=None, dtype=None, max_items=None):
        """Member ``name`` as an array, its header checked first against
        ``shape``, dtype ``kinds`` or ``dtype``, and ``max_items``."""
        info = self.infos.get(name)
        if info is None:
            raise self.bad(f"not a fastnn model file (no '{name}')")
        with self.zf.open(info) as f:
            hshape, hdtype = self._header(f, name)
        if hdtype.hasobject:
            raise self.bad(f"'{name}' holds Python objects (refused: never unpickled)")
        if shape is not None and tuple(hshape) != tuple(shape):
            raise self.bad(f"'{name}' has shape {tuple(hshape)}, expected {tuple(shape)}")
        if kinds is not None and hdtype.kind not in kinds:
            raise self.bad(f"malformed '{name}' (dtype {hdtype})")
        if dtype is not None and hdtype != dtype:
            raise self.bad(f"'{name}' has dtype {hdtype}, expected {dtype}")
        n_items = int(np.prod(hshape, dtype=np.float64))
        if max_items is not None and n_items > max_items:
            raise self.bad(f"malformed '{name}' (shape {tuple(hshape)})")
        if n_items * hdtype.itemsize > info.file_size:
            raise self.bad(f"'{name}' is truncated")
        with self.zf.open(info) as f:
            try:
                return np.lib.format.read_array(f, allow_pickle=False)
            except (ValueError, EOFError, OSError, zipfile.BadZipFile) as e:
                raise self.bad(f"'{name}' is unreadable ({e})") from None

    def _header(self, f, name):
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                hshape, _, hdtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                hshape, _, hdtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"npy version {version}")
        except ValueError as e:
            raise self.bad(f"malformed '{name}' ({e})") from None
        return hshape, hdtype

    def description(self):
        """(the architecture as Network.describe gives it, layer sizes, dtype)."""
        version = self.read("fastnn_format", kinds="iu", max_items=1)
        if version.shape != () or int(version) != FORMAT_VERSION:
            raise self.bad(f"unsupported fastnn format version {version!r}")
        layers = self.read("layers", kinds="iu", max_items=10_000)
        if layers.ndim != 1:
            raise self.bad("malformed 'layers'")
        strings = {key: str(self.read(key, shape=(), kinds="U", max_items=1))
                   for key in ("output", "dtype")}
        hidden = self.read("hidden", kinds="U", max_items=10_000)  # a name, or one per layer
        if hidden.ndim > 1:
            raise self.bad("malformed 'hidden'")
        strings["hidden"] = str(hidden) if hidden.ndim == 0 else [str(a) for a in hidden]
        settings = {key: float(self.read(key, shape=(), kinds="f", max_items=1))
                    for key in LOSS_SETTINGS if key in self.infos}
        try:
            sizes = validation.check_layers(layers.tolist())
            validation.check_hidden(strings["hidden"], len(sizes) - 2)
            validation.check_choice("output", strings["output"], validation.OUTPUTS)
            dtype = validation.check_dtype(strings["dtype"])
            validation.check_loss_settings(strings["output"], settings.get("delta", 1.0),
                                           settings.get("label_smoothing", 0.0))
        except (ValueError, TypeError) as e:
            raise self.bad(f"invalid model description ({e})") from None
        return {"layers": sizes, "hidden": strings["hidden"], "output": strings["output"],
                "dtype": dtype.name, **settings}, sizes, dtype

    def parameters(self, sizes, dtype):
        """(weights, biases): every parameter array must be in the file with
        its full size before the network (and its memory) is made."""
        shapes = {}
        for l in range(len(sizes) - 1):
            shapes[f"W{l}"] = (sizes[l], sizes[l + 1])
            shapes[f"b{l}"] = (sizes[l + 1],)
        extra = set(self.infos) - set(shapes) - {"fastnn_format", "layers", "hidden", "output",
                                                  "dtype", *LOSS_SETTINGS}
        if extra:
            raise self.bad(f"unexpected arrays {sorted(extra)}")
        for name, shape in shapes.items():
            info = self.infos.get(name)
            if info is None:
                raise self.bad(f"missing '{name}'")
            if info.file_size < int(np.prod(shape, dtype=np.float64)) * dtype.itemsize:
                raise self.bad(f"'{name}' is truncated")
        arrays = {}
        for name, shape in shapes.items():
            arrays[name] = self.read(name, shape=shape, dtype=dtype)
            if not np.isfinite(arrays[name]).all():
                raise self.bad(f"'{name}' contains NaN or infinity")
        n_layers = len(sizes) - 1
        return ([arrays[f"W{l}"] for l in range(n_layers)],
                [arrays[f"b{l}"] for l in range(n_layers)])
