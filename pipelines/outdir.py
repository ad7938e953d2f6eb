"""The output directory: which directories keytrail may write into, and how it writes.

Every file keytrail writes under `--out` (and its watch state) goes through this module:
- `claim_out_dir` accepts a new or empty directory (and marks it with `.keytrail-store`)
  or a directory already marked; anything else is refused, so `--out ~` cannot touch
  `~/events`.
- `atomic_write` / `atomic_file` write a temp file with an unpredictable name in the
  target's directory (created O_EXCL, so a planted file or symlink is never opened) and
  rename it over the target: a symlink planted at the target is replaced, never followed.
- `append_file` opens append-only logs (dead letters, metrics) with O_NOFOLLOW.
- `remove_owned` deletes only files whose names keytrail itself gives (its shard
  patterns and temp files), never a directory tree.
Sub-directories that are symlinks are refused rather than written through.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

import orjson

from parsers.base import KeytrailError

MARKER: Final[str] = ".keytrail-store"
STORE_VERSION: Final[int] = 1
# Temp files of atomic_write: ".<target name>.<random>.tmp"; remove_owned also clears them.
_TMP_RE: Final[re.Pattern[str]] = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")


class OutDirError(KeytrailError):
    """The output directory cannot be used safely."""


def claim_out_dir(out: Path) -> Path:
    """Create `out`, or accept it when empty or already a keytrail store; else refuse."""
    if out.is_symlink() and not out.exists():
        raise OutDirError(f"--out {out}: dangling symlink; pick a new or empty directory")
    if out.exists():
        if not out.is_dir():
            raise OutDirError(f"--out {out}: not a directory; pick a new or empty directory "
                              "or an existing keytrail store")
        marker = out / MARKER
        if marker.is_symlink() or (marker.exists() and not marker.is_file()):
            raise OutDirError(f"--out {out}: {MARKER} is not a regular file; refusing to use it")
        if not marker.exists():
            if any(out.iterdir()):
                raise OutDirError(
                    f"--out {out}: directory is not empty and is not a keytrail store (no "
                    f"{MARKER}); pick a new or empty directory, or an existing keytrail store")
            _write_marker(out)
        return out
    out.mkdir(parents=True, exist_ok=True)
    _write_marker(out)
    return out


def _write_marker(out: Path) -> None:
    atomic_write(out / MARKER, orjson.dumps({"keytrail_store": STORE_VERSION}) + b"\n")


def is_store(out: Path) -> bool:
    m = out / MARKER
    return m.is_file() and not m.is_symlink()


def ensure_dir(path: Path) -> Path:
    """mkdir -p that refuses a symlink (or non-directory) anywhere it creates or meets
    below an existing real directory, so nothing is written through a planted link."""
    path.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise OutDirError(f"{path}: is a symlink or not a directory; refusing to write through it")
    return path


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK: Final[int] = _current_umask()  # read once: os.umask is process-wide, not thread-safe


class AtomicFile:
    """A temp file in the target's directory that becomes `path` on `commit`.

    mkstemp creates it O_CREAT|O_EXCL under a random name, so nothing planted (a file or
    a symlink) is ever opened; `commit` renames it over `path`, which replaces a symlink
    there instead of following it. Permissions are the usual umask ones, not mkstemp's 0600.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        ensure_dir(path.parent)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)
        self.fh: IO[bytes] = os.fdopen(fd, "wb")

    def commit(self, durable: bool = False) -> None:
        if not self.fh.closed:
            if durable:
                self.fh.flush()
                os.fsync(self.fh.fileno())
            self.fh.close()
        os.replace(self.tmp, self.path)
        if durable:
            dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def discard(self) -> None:
        self.fh.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


@contextlib.contextmanager
def atomic_file(path: Path, durable: bool = False) -> Iterator[IO[bytes]]:
    """A binary file handle whose content replaces `path` atomically on success."""
    af = AtomicFile(path)
    try:
        yield af.fh
    except BaseException:
        af.discard()
        raise
    af.commit(durable)


def atomic_write(path: Path, data: bytes | str, durable: bool = False) -> None:
    """Replace `path` with `data` (str as UTF-8) atomically; `durable` fsyncs file and dir."""
    with atomic_file(path, durable) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)


def append_file(path: Path) -> IO[bytes]:
    """Open `path` for appending, creating it; a symlink at `path` is refused (O_NOFOLLOW)."""
    ensure_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o666)
    except OSError as exc:
        raise OutDirError(f"{path}: cannot open for appending ({exc.strerror}); a symlink "
                          "there is refused") from None
    return os.fdopen(fd, "ab")


def remove_owned(directory: Path, pattern: re.Pattern[str]) -> int:
    """Delete the files in `directory` whose names match `pattern` (or keytrail's temp-file
    pattern); symlinks are removed as links, sub-directories and other files are kept.
    The directory itself is removed only when that leaves it empty. Returns the count."""
    if directory.is_symlink() or not directory.is_dir():
        return 0
    n = 0
    with os.scandir(directory) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                continue
            if pattern.fullmatch(entry.name) or _TMP_RE.match(entry.name):
                os.unlink(entry.path)
                n += 1
    with contextlib.suppress(OSError):
        directory.rmdir()  # only succeeds when empty
    return n
