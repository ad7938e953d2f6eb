"""Input sources: expand files, directories, globs and s3:// prefixes; open them as byte streams.

`.gz` is decompressed transparently (detected by magic bytes, not by name) with a bound on
the decompressed size; S3 goes through boto3 with an optional endpoint override for
S3-compatible stores (KEYTRAIL_S3_ENDPOINT_URL or AWS_ENDPOINT_URL_S3).
"""

from __future__ import annotations

import glob
import io
import os
import stat
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, cast

from parsers.base import KeytrailError
from parsers.framing import Source, read_upto

MAX_DECOMPRESSED: Final[int] = 4 << 30  # 4 GiB per object: bounded decompression
# ... and bounded by ratio once past RATIO_FLOOR: JSON logs compress 10-30:1, deflate's
# ceiling is ~1032:1, so only a crafted stream gets near it.
MAX_RATIO: Final[int] = 250
RATIO_FLOOR: Final[int] = 64 << 20
GZIP_MAGIC: Final[bytes] = b"\x1f\x8b"
SKIP_NAMES: Final[frozenset[str]] = frozenset({"README.md", ".DS_Store"})


class SourceError(KeytrailError):
    """An input cannot be found or read."""


@dataclass(frozen=True, order=True)
class InputFile:
    """One input object: a local path or an s3:// URI, with its size and version tag."""

    uri: str
    size: int = 0
    etag: str = ""
    start: int = 0  # byte range of a growing local file (live mode); end -1 = to EOF
    end: int = -1
    generation: str = ""  # live mode: which file was at this path (device:inode)

    @property
    def unit_id(self) -> str:
        """Identity of this unit of work (the whole object, or one byte range of it)."""
        uid = self.uri if (self.start, self.end) == (0, -1) else f"{self.uri}@{self.start}"
        return f"{uid}#{self.generation}" if self.generation else uid


def s3_client() -> Any:
    import boto3  # only pipelines import boto3

    endpoint = os.environ.get("KEYTRAIL_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    return boto3.client("s3", endpoint_url=endpoint) if endpoint else boto3.client("s3")


def split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise SourceError(f"{uri}: expected s3://bucket/prefix")
    return bucket, prefix


def list_s3(uri: str, start_after: str | None = None, client: Any = None) -> Iterator[InputFile]:
    """Objects under an s3:// prefix in key order (ListObjectsV2 paging)."""
    bucket, prefix = split_s3(uri)
    client = client or s3_client()
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if start_after:
        kwargs["StartAfter"] = start_after
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(**kwargs):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith("/") or key.rsplit("/", 1)[-1] in SKIP_NAMES:
                continue
            yield InputFile(f"s3://{bucket}/{key}", int(obj.get("Size", 0)),
                            str(obj.get("ETag", "")).strip('"'))


# Local input policy (docs/supply-chain-and-fuzzing.md, "Inputs"): a path named on the
# command line is used as named, even through a symlink. Inside an input directory (or a
# glob's fixed prefix) a symlink is never followed out of that root; a file link inside
# the root is read once, a directory link inside it is not entered (its target is walked
# through its real path). FIFOs, sockets and devices are never opened. Everything left
# out is reported (run_summary.json `inputs_skipped`, one stderr line each), never dropped
# silently.


def _skip(path: str, reason: str) -> dict[str, str]:
    return {"path": path, "reason": reason}


def _special_kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "not_a_regular_file"


def _readable(path: str) -> bool:
    """Open and close without reading: O_NONBLOCK so nothing can block, even a FIFO swapped
    in since the stat."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _check_file(path: str, root: str | None) -> tuple[str | None, str | None]:
    """(real path to read, None) or (None, skip reason) for one candidate file.

    `root` is the real path of the directory the candidate was found in (None: named on
    the command line, used as named)."""
    try:
        lst = os.lstat(path)
    except OSError:
        return None, "unreadable_file"
    real = os.path.realpath(path)
    if stat.S_ISLNK(lst.st_mode):
        if root is not None and not _inside(real, root):
            return None, "symlink_outside_input"
        try:
            st = os.stat(path)
        except OSError:
            return None, "dangling_symlink"
    else:
        st = lst
    kind = _special_kind(st.st_mode)
    if kind is not None:
        return None, kind
    if not _readable(path):
        return None, "unreadable_file"
    return real, None


def _walk(top: str, root: str, files: list[str], skipped: list[dict[str, str]]) -> None:
    try:
        entries = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError:
        skipped.append(_skip(top, "unreadable_directory"))
        return
    for e in entries:
        if e.name in SKIP_NAMES or e.name.startswith("."):
            continue
        try:
            is_link = e.is_symlink()
            is_dir = e.is_dir(follow_symlinks=False)
        except OSError:
            skipped.append(_skip(e.path, "unreadable_file"))
            continue
        if is_dir:
            _walk(e.path, root, files, skipped)
        elif is_link and os.path.isdir(e.path):
            real = os.path.realpath(e.path)
            skipped.append(_skip(e.path, "symlinked_directory" if _inside(real, root)
                                 else "symlink_outside_input"))
        else:
            files.append(e.path)


def scan_local_dir(directory: str) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
    """The readable regular files under `directory` as (path, real path), sorted, each real
    file once; and what was left out, with why. Shared by `run`, `parse` and `watch`."""
    root = os.path.realpath(directory)
    candidates: list[str] = []
    skipped: list[dict[str, str]] = []
    _walk(directory, root, candidates, skipped)
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    # Real files before links, so a file reached both ways keeps its own name.
    for path in sorted(candidates, key=lambda c: (os.path.islink(c), c)):
        real, reason = _check_file(path, root)
        if reason is not None:
            skipped.append(_skip(path, reason))
        elif real is not None and real not in seen:
            seen.add(real)
            out.append((path, real))
    out.sort()
    skipped.sort(key=lambda d: (d["path"], d["reason"]))
    return out, skipped


def _glob_root(pattern: str) -> str:
    """Real path of a glob's fixed leading directory (the part before any wildcard)."""
    parts: list[str] = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return os.path.realpath(os.path.join(*parts) if parts else ".")


def scan_inputs(inputs: list[str]) -> tuple[list[InputFile], list[dict[str, str]]]:
    """Every file named by the inputs, sorted and de-duplicated, and every local path left
    out with its reason (see the policy above); raises on a missing input."""
    found: dict[str, InputFile] = {}
    skipped: list[dict[str, str]] = []
    for item in inputs:
        if item.startswith("s3://"):
            try:
                objs = list(list_s3(item))
            except KeytrailError:
                raise
            except Exception as exc:
                raise SourceError(f"{item}: cannot list S3 objects ({type(exc).__name__}: "
                                  f"{exc}); check the bucket, credentials and "
                                  "KEYTRAIL_S3_ENDPOINT_URL") from None
            for o in objs:
                found[o.uri] = o
            continue
        p = Path(item)
        if p.is_dir():
            files, skip = scan_local_dir(str(p))  # Path-normalised, as rglob named files
            skipped.extend(skip)
            for path, real in files:
                found[path] = InputFile(path, os.stat(real).st_size)
        elif p.exists() or p.is_symlink():
            name = str(p)  # Path-normalised, as before
            _real, reason = _check_file(name, None)
            if reason is not None:
                skipped.append(_skip(name, reason))
            else:
                found[name] = InputFile(name, os.stat(name).st_size)
        else:
            matches = sorted(glob.glob(item, recursive=True))
            root = _glob_root(item)
            hits = 0
            for m in matches:
                if os.path.isdir(m) and not os.path.islink(m):
                    continue
                hits += 1
                _real, reason = _check_file(m, root)
                if reason is not None:
                    skipped.append(_skip(m, reason))
                else:
                    found[m] = InputFile(m, os.stat(m).st_size)
            if not hits:
                raise SourceError(f"input {item!r} not found: pass an existing file, directory, "
                                  "glob or s3://bucket/prefix")
    uniq = {(d["path"], d["reason"]): d for d in skipped}
    return sorted(found.values()), [uniq[k] for k in sorted(uniq)]


def report_skipped(skipped: list[dict[str, str]], stream: IO[str] | None = None) -> None:
    """One stderr line per input left out."""
    out = stream or sys.stderr
    for d in skipped:
        print(f"keytrail: skipped input {d['path']}: {d['reason'].replace('_', ' ')}",
              file=out)


def expand_inputs(inputs: list[str]) -> list[InputFile]:
    """The files of scan_inputs; what it leaves out is reported on stderr."""
    files, skipped = scan_inputs(inputs)
    report_skipped(skipped)
    return files


class _BoundedGzip(io.RawIOBase):
    """Streaming gzip (multi-member) decompression, bounded in size and ratio.

    `read(n)` returns n bytes unless the data ends. Corrupt data (a bad later member,
    trailing garbage), a truncated last member or a bound exceeded end the stream early:
    everything decompressed before is returned, and `stream_error` says what happened and
    at which decompressed byte, so the parser keeps the records before it and the caller
    reports the rest as one quarantined span.
    """

    def __init__(self, raw: Any, limit: int, ratio: int = MAX_RATIO) -> None:
        self._raw = raw
        self._limit = limit
        self._ratio = ratio
        self._in = 0
        self._out = 0
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._fed = 0  # compressed bytes given to the current member
        self._buf = b""
        self._eof = False
        self.stream_error: SourceError | None = None

    def readable(self) -> bool:
        return True

    def _stop(self, message: str) -> None:
        self.stream_error = SourceError(message)
        self._eof = True

    def _fill(self, want: int) -> None:
        while len(self._buf) < want and not self._eof:
            chunk = self._d.unconsumed_tail
            if not chunk:
                if self._d.eof:  # the last member ended; more bytes start another one
                    chunk = self._d.unused_data
                    self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    self._fed = 0
                if not chunk:
                    chunk = self._raw.read(1 << 16)
                    self._in += len(chunk)
            if not chunk:
                if self._fed and not self._d.eof:
                    self._stop(f"gzip data ends inside a member (truncated object) at "
                               f"decompressed byte {self._out}")
                self._eof = True
                break
            self._fed += len(chunk)
            try:
                data = self._d.decompress(chunk, 1 << 20)
            except zlib.error as exc:
                self._stop(f"corrupt gzip data at decompressed byte {self._out}: {exc}")
                break
            self._out += len(data)
            self._buf += data
            if self._out > self._limit:
                self._stop(f"decompressed size exceeds {self._limit} bytes (MAX_DECOMPRESSED)")
            elif self._out > RATIO_FLOOR and self._out > self._ratio * self._in:
                self._stop(f"decompression ratio above {self._ratio}:1 after {self._out} "
                           "bytes (a gzip bomb?)")

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            self._fill(self._limit + 1)
            data, self._buf = self._buf, b""
            return data
        self._fill(size)
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def open_input(f: InputFile, client: Any = None) -> IO[bytes]:
    """Open an input as a (decompressed) binary stream."""
    raw: Any
    try:
        if f.uri.startswith("s3://"):
            bucket, key = split_s3(f.uri)
            obj = (client or s3_client()).get_object(Bucket=bucket, Key=key)
            raw = obj["Body"]
        else:
            fh = open(f.uri, "rb")  # noqa: SIM115 - closed by the caller
            if f.start or f.end >= 0:
                fh.seek(f.start)
                raw = _Limited(fh, f.end - f.start if f.end >= 0 else None)
            else:
                raw = fh
    except KeytrailError:
        raise
    except Exception as exc:
        raise SourceError(f"{f.uri}: cannot open ({type(exc).__name__}: {exc})") from None
    head = read_upto(raw, 2)
    rest = Source(head, raw, owns=True)  # the magic bytes, then the rest (the one rejoining stream)
    if head == GZIP_MAGIC:
        # It buffers itself, and exposes stream_error (a BufferedReader would hide it).
        return cast(IO[bytes], _BoundedGzip(rest, MAX_DECOMPRESSED))
    return io.BufferedReader(rest, 1 << 20)


class _Limited(io.RawIOBase):
    """At most `limit` bytes of a file from its current position."""

    def __init__(self, raw: IO[bytes], limit: int | None) -> None:
        self._raw = raw
        self._left = limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._left is None:
            return self._raw.read(size)
        if size is None or size < 0 or size > self._left:
            size = self._left
        data = self._raw.read(size)
        self._left -= len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()
