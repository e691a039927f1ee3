"""Where fastnn's compiled kernels are cached, and a cache that cannot hurt.

Numba caches machine code next to the source (``__pycache__``) and, on its
own, invalidates a kernel only when *its* file changes; it fails with "no
locator available" where no directory is writable, and a damaged cache file
raises on every later run (a flipped byte in the machine code crashes it).
fastnn's kernels get instead:

* **a stamp over all kernel sources and the code-changing settings**, so an
  edit of any kernel file (or ``FASTNN_PARALLEL``, the CPU target) recompiles
  them all (see ``_config.kernel_source_stamp``);
* **a location that works everywhere**, first that applies:
  ``NUMBA_CACHE_DIR`` if set; the package's ``__pycache__`` if writable; a
  per-user directory (``$XDG_CACHE_HOME/fastnn`` or ``~/.cache/fastnn``);
  a per-user directory under the system's temporary directory. When the
  package directory is read-only (system site-packages, a Docker image, a
  shared cluster), the kernels cached there at install time are copied into
  the per-user directory the first time, instead of being compiled again;
* **integrity**: every data file fastnn writes carries a SHA-256 of its
  bytes, checked before anything is unpickled or loaded; an unreadable
  index or a mismatching file is reported once as a warning and the kernel
  is recompiled (and the entry rewritten);
* **safe sharing**: processes that compile into one cache at once (a
  compile helper and a fit, ``pytest -n``, Dask workers) take turns, under
  the directory's ``fastnn-index.lock``, to add an entry to an index and
  write its file. Numba's own save reads the index, picks the first free
  file number and writes both back: two processes saving different
  signatures of one kernel at once picked the same number, and one
  signature's entry then named the other's machine code (a later call
  failed with "can't unbox array"). Each data file also carries a digest
  of its key and the source stamp, checked on load, so a file that does
  not belong to the key asked for is a cache miss, not a wrong call. A
  child forked mid-save does not keep the lock, and a holder stopped
  mid-save (Ctrl-Z) delays others' saves by ``LOCK_WAIT`` at most.
"""
import contextlib
import functools
import hashlib
import itertools
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the fastnn package
_MAGIC = b"FNNC2"  # header of fastnn's checked cache data files
_DIGEST = 32
INDEX_LOCK = "fastnn-index.lock"
_our_paths = set()  # cache directories holding fastnn's kernels
_warned = []
write_errors = []  # (cache directory, reason) of this process's first failed write
# Below this much free space a cache directory is not worth a compile
# helper (its writes would fail); the kernels of one dtype take ~20 MB.
MIN_FREE_BYTES = 64 * 2**20


def user_cache_dir():
    """The per-user cache directory (not created)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastnn")


def temp_cache_dir():
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return os.path.join(tempfile.gettempdir(), f"fastnn-cache-{uid}")


def unusable(path):
    """Why compiled kernels cannot be written into the cache directory
    ``path`` (created if missing), or None: it cannot be created or written,
    or its file system has less than ``MIN_FREE_BYTES`` free."""
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK):
            return "not writable"
        st = os.statvfs(path) if hasattr(os, "statvfs") else None
    except OSError as e:
        return e.strerror or str(e)
    if st is not None and st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
        return f"{st.f_bavail * st.f_frsize / 2**20:.0f} MB free"
    return None


def cannot_write(path, error):
    """Kernels cannot be saved into ``path`` (``error``: an OSError or the
    reason): report it once; kernels stay compiled in memory and the work
    goes on."""
    if write_errors:
        return
    reason = getattr(error, "strerror", None) or str(error)
    write_errors.append((path, reason))
    warnings.warn(f"fastnn: cannot write the kernel cache at {path} ({reason}); kernels "
                  f"compiled by this process stay in its memory (reported once)",
                  RuntimeWarning, stacklevel=2)


def _writable(path):
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def _seed_from_install(src, dst):
    """Copy the kernels cached at install time (``src``, read-only) into
    ``dst`` once per process; files already there are kept."""
    try:
        names = [n for n in os.listdir(src) if n.endswith((".nbi", ".nbc"))]
    except OSError:
        return
    for name in names:
        target = os.path.join(dst, name)
        if not os.path.exists(target):
            try:
                tmp = f"{target}.tmp.{os.getpid()}"
                shutil.copyfile(os.path.join(src, name), tmp)
                os.replace(tmp, target)
            except OSError:
                return


def install(stamp, before_load=None, variant=""):
    """Put fastnn's locators in front of Numba's (for fastnn's files only)
    and make its cache files checked. ``stamp`` replaces Numba's per-file
    source stamp; ``variant`` is added to every file name;
    ``before_load()`` runs before a kernel is read back."""
    try:
        from numba.core import caching
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
        base = getattr(caching, "_CacheLocator")
        source_backed = getattr(caching, "_SourceFileBackedLocatorMixin")
        index_file = caching.IndexDataCacheFile
    except AttributeError:  # an unknown Numba layout: keep its defaults
        return False

    class FastnnLocator(source_backed, base):
        def __init__(self, py_func, py_file, path):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = path
            _our_paths.add(path)

        def get_cache_path(self):
            return self._cache_path

        def get_source_stamp(self):
            return stamp

        def get_disambiguator(self):
            return f"{self._lineno}-{variant}" if variant else str(self._lineno)

        @classmethod
        def from_function(cls, py_func, py_file):
            if not Path(py_file).resolve().is_relative_to(PACKAGE_DIR):
                return None  # not fastnn's: Numba's own locators decide
            in_tree = os.path.join(os.path.dirname(py_file), "__pycache__")
            sub = base.get_suitable_cache_subpath(py_file)
            from numba.core import config
            if config.CACHE_DIR:
                return cls(py_func, py_file, os.path.join(config.CACHE_DIR, sub))
            if _writable(in_tree):
                return cls(py_func, py_file, in_tree)
            for root in (user_cache_dir(), temp_cache_dir()):
                path = os.path.join(root, sub)
                if _writable(path):
                    _seed_from_install(in_tree, path)
                    return cls(py_func, py_file, path)
            return None  # nowhere to write: Numba reports it

    impl._locator_classes[0:0] = [FastnnLocator]
    _check_cache_files(index_file, before_load)
    _never_fail_a_save(caching.Cache)
    return True


def _never_fail_a_save(cache_class):
    """A full or read-only disk makes Numba's save raise out of the
    compiling call (a fit failed with ENOSPC): for fastnn's kernels the
    failure is reported once instead."""
    if getattr(cache_class, "_fastnn_guarded", False):
        return
    save_overload = cache_class.save_overload

    def guarded(self, sig, data):
        if self._cache_path not in _our_paths:
            return save_overload(self, sig, data)
        try:
            save_overload(self, sig, data)
        except OSError as e:
            cannot_write(self._cache_path, e)

    cache_class.save_overload = guarded
    cache_class._fastnn_guarded = True


def open_lock_file(path, name):
    """A descriptor of the lock file ``name`` in the cache directory
    ``path`` (created if missing), for flock. Raises OSError if it
    cannot be opened."""
    name = os.path.join(path, name)
    try:
        return os.open(name, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file in a shared cache
        return os.open(name, os.O_RDONLY)


# A save holds the index lock for milliseconds; a holder that keeps it
# longer is stopped (Ctrl-Z) or stuck, and a save never waits on it for
# longer than this: it goes on unguarded (each file's key tag keeps loads
# right), as do this process's later saves into that directory.
LOCK_WAIT = 10.0
_stuck = set()  # cache directories whose index lock was not had in LOCK_WAIT
_held = set()   # file descriptors of index locks this process holds


def _close_held_locks():
    # A child forked while a thread of its parent held an index lock
    # shares that lock (flock's are per open file): closing its copies
    # lets the parent's release reach every other process.
    for fd in list(_held):
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_locks)


@contextlib.contextmanager
def _index_lock(path):
    """Hold the cache directory ``path``'s index lock (an flock; none where
    the platform has no flock, and none after ``LOCK_WAIT`` seconds of
    another holder)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    if path in _stuck:
        yield
        return
    fd = open_lock_file(path, INDEX_LOCK)
    _held.add(fd)
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    _stuck.add(path)
                    break
                time.sleep(0.002)
        yield
    finally:
        _held.discard(fd)
        os.close(fd)  # releases the lock


def _key_tag(stamp, key):
    """What a data file is for: the digest of its index key (signature,
    target, bytecode) and the source stamp."""
    return hashlib.sha256(repr((stamp, key)).encode()).digest()


def holds(cache_file, key):
    """Whether the cache file set ``cache_file`` (a Numba
    ``IndexDataCacheFile``) has a complete entry for ``key``, without
    loading it: the index names a file, and (for fastnn's files) the file
    carries the key's tag. An entry's file is written before its index
    entry, so this does not answer True while the file is being written."""
    name = cache_file._load_index().get(key)
    if name is None:
        return False
    path = cache_file._data_path(name)
    if cache_file._cache_path not in _our_paths:
        return os.path.exists(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(_MAGIC) + 2 * _DIGEST)
    except OSError:
        return False
    return (head[:len(_MAGIC)] == _MAGIC
            and head[len(_MAGIC) + _DIGEST:] == _key_tag(cache_file._source_stamp, key))


def _warn_once(message):
    if not _warned:
        _warned.append(message)
        warnings.warn(f"fastnn: {message}; recompiling it (reported once)", RuntimeWarning,
                      stacklevel=3)


def _check_cache_files(index_file, before_load=None):
    """Wrap Numba's cache file class so fastnn's files carry and check a
    SHA-256 of their bytes, and a damaged index is a cache miss."""
    if getattr(index_file, "_fastnn_checked", False):
        return
    load_index, save_data, load_data, numba_load, numba_save = (
        index_file._load_index, index_file._save_data, index_file._load_data, index_file.load,
        index_file.save)
    from numba.core import caching
    log = getattr(caching, "_cache_log", lambda *a: None)  # NUMBA_DEBUG_CACHE output

    def ours(self):
        return self._cache_path in _our_paths

    def _load_index(self):
        if not ours(self):
            return load_index(self)
        try:
            return load_index(self)
        except Exception as e:  # truncated or garbage: UnpicklingError, EOFError, ...
            _warn_once(f"the kernel cache index {self._index_path} is unreadable "
                       f"({type(e).__name__})")
            try:
                os.unlink(self._index_path)
            except OSError:
                pass
            return {}

    def _save_data(self, name, data, key=None):
        if not ours(self) or key is None:
            return save_data(self, name, data)
        payload = self._dump(data)
        path = self._data_path(name)
        with self._open_for_write(path) as f:
            f.write(_MAGIC + hashlib.sha256(payload).digest()
                    + _key_tag(self._source_stamp, key) + payload)
        log("[cache] data saved to %r", path)

    def _load_data(self, name, key=None):
        if not ours(self) or key is None:
            return load_data(self, name)
        if before_load is not None:
            before_load()
        import pickle

        path = self._data_path(name)
        with open(path, "rb") as f:
            raw = f.read()
        head = len(_MAGIC) + 2 * _DIGEST
        payload = raw[head:]
        if raw[:len(_MAGIC)] != _MAGIC or hashlib.sha256(payload).digest() != raw[
                len(_MAGIC):len(_MAGIC) + _DIGEST]:
            _warn_once(f"the cached kernel {path} is damaged (checksum mismatch)")
            return None
        if raw[len(_MAGIC) + _DIGEST:head] != _key_tag(self._source_stamp, key):
            # Written for another signature or source: a miss, and the
            # recompile's save rewrites this entry.
            log("[cache] data in %r is not for this key", path)
            return None
        try:
            data = pickle.loads(payload)
        except Exception as e:
            _warn_once(f"the cached kernel {path} is unreadable ({type(e).__name__})")
            return None
        log("[cache] data loaded from %r", path)
        return data

    def load(self, key):
        # Numba's own load() turns only OSError into a miss.
        if not ours(self):
            return numba_load(self, key)
        overloads = self._load_index()
        data_name = overloads.get(key)
        if data_name is None:
            return None
        try:
            return self._load_data(data_name, key)
        except OSError:
            return None

    def save(self, key, data):
        if not ours(self):
            return numba_save(self, key, data)
        # Numba's save, with the index read, the file written and the
        # index written back under the directory's lock; the file goes
        # first, so no reader finds an entry before its file.
        with _index_lock(self._cache_path):
            overloads = self._load_index()
            data_name = overloads.get(key)
            names = list(overloads.values())
            if data_name is None or names.count(data_name) > 1:
                # (a name two keys share, left by an unguarded save: this
                # key moves to a file of its own)
                taken = set(names)
                data_name = next(n for n in map(self._data_name, itertools.count(1))
                                 if n not in taken)
            self._save_data(data_name, data, key)
            if overloads.get(key) != data_name:
                overloads[key] = data_name
                self._save_index(overloads)

    index_file._load_index = _load_index
    index_file._save_data = _save_data
    index_file._load_data = _load_data
    index_file.load = load
    index_file.save = save
    index_file._fastnn_checked = True
