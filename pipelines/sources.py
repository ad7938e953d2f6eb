"""Input sources: expand files, directories, globs and s3:// prefixes; open them as byte streams.

`.gz` is decompressed transparently (detected by magic bytes, not by name) with a bound on
the decompressed size; S3 goes through boto3 with an optional endpoint override for
S3-compatible stores (KEYTRAIL_S3_ENDPOINT_URL or AWS_ENDPOINT_URL_S3).
"""

from __future__ import annotations

import glob
import io
import os
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


def expand_inputs(inputs: list[str]) -> list[InputFile]:
    """Every file named by the inputs, sorted and de-duplicated; raises on a missing input."""
    found: dict[str, InputFile] = {}
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
        if p.is_file():
            found[str(p)] = InputFile(str(p), p.stat().st_size)
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.name not in SKIP_NAMES and not f.name.startswith("."):
                    found[str(f)] = InputFile(str(f), f.stat().st_size)
        else:
            matches = sorted(glob.glob(item, recursive=True))
            files = [m for m in matches if Path(m).is_file()]
            if not files:
                raise SourceError(f"input {item!r} not found: pass an existing file, directory, "
                                  "glob or s3://bucket/prefix")
            for m in files:
                found[m] = InputFile(m, Path(m).stat().st_size)
    return sorted(found.values())


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
