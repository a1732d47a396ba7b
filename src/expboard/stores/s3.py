"""Run files in S3-compatible object storage (AWS S3, MinIO, Ceph, R2, GCS's S3 API): ``s3://bucket/prefix``.

Needs the ``s3`` extra (boto3). Credentials come from the standard AWS chain only (environment, shared
files, instance roles); the endpoint from ``endpoint_url`` (``expboard server --s3-endpoint-url``) or the
standard ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``.

Layout under the prefix:

- ``<run_id>/<name>``: a file written whole (a single PUT, or a multipart upload completed only once every
  part is stored, so it is visible whole or not at all), or an appended file once compacted. Its metadata
  holds a generation id, new for every write.
- ``.expboard/appends/<run_id>/<quoted name>/<generation>/<offset:020d>``: the bytes appended at that
  offset, an immutable object created only if it does not exist yet (``If-None-Match: *``). The file is the
  whole object (if any) followed by the chain of append objects starting at its size. Appending N bytes
  costs O(1) requests (a HEAD of the whole object and one conditional PUT) and N bytes, never a rewrite;
  two servers appending at the same offset cannot both win, so several servers can serve one bucket.

When a run ends (:meth:`S3Files.finalize`), a background thread compacts each appended file into its whole
object (server-side copies for large pieces, a multipart upload) and deletes the append objects it covers.
A server stopped before that leaves the file as it was: complete, just in more objects.
"""

from __future__ import annotations

import builtins
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlparse

from ..errors import ConfigError, NotFoundError, StoreUnavailableError, ValidationError
from ..names import check_file_name
from ..records import FileInfo
from .files import READ_PIECE_BYTES, FileStorage, FileWriter, check_storage_run_id

try:
    import boto3
    import botocore.config
    import botocore.exceptions
except ImportError as _exc:  # pragma: no cover - the s3 extra is missing
    raise ConfigError("s3:// artifact roots need boto3: pip install 'expboard[s3]'") from _exc

__all__ = ["PART_BYTES", "S3Files"]

PART_BYTES = 6 * 1024 * 1024  # multipart part size (S3's minimum is 5 MiB); two in memory per upload at most
_SMALL = 256 * 1024  # pieces smaller than this are fetched several at a time
_GEN_KEY = "expboard-gen"
_NO_BASE_GEN = "0"
_APPENDS = ".expboard/appends/"
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_PRECONDITION = frozenset({"412", "PreconditionFailed", "ConditionalRequestConflict"})
_CONNECTION_ERRORS = (botocore.exceptions.BotoCoreError, OSError)
_CACHE_SIZE = 4096
_CHUNK_CACHE_BYTES = 16 * 1024 * 1024  # bytes of small append objects kept (they never change)


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: botocore.exceptions.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


@dataclass
class _Chunk:
    start: int
    size: int
    key: str
    modified: float


@dataclass
class _State:
    """What a file is made of: its whole object (maybe absent) and the chain of appends after it."""

    gen: str
    base_size: int = 0
    base_etag: str | None = None
    base_modified: float = 0.0
    chunks: list[_Chunk] = field(default_factory=list)

    @property
    def exists(self) -> bool:
        return self.base_etag is not None or bool(self.chunks)

    @property
    def end(self) -> int:
        return self.chunks[-1].start + self.chunks[-1].size if self.chunks else self.base_size

    @property
    def modified(self) -> float:
        return max([self.base_modified, *(c.modified for c in self.chunks)])


@dataclass
class _Segment:
    key: str
    lo: int  # byte range inside the object
    hi: int
    offset: int  # where the object's byte 0 is in the file
    etag: str | None = None  # for the whole object: read only while it is unchanged
    size: int = -1  # for an append object: its size (a small one is fetched whole and kept)


class _S3Writer(FileWriter):
    def __init__(self, files: S3Files, run_id: str, name: str) -> None:
        self._files, self._run_id, self._name = files, run_id, name
        self._key = files._key(run_id, name)
        self._gen = uuid.uuid4().hex
        self._buf = bytearray()
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._pending: Future[dict[str, Any]] | None = None
        self._done = False

    def write(self, data: bytes) -> None:
        self._buf += data
        self._size += len(data)
        while len(self._buf) >= PART_BYTES:
            part = bytes(self._buf[:PART_BYTES])
            del self._buf[:PART_BYTES]
            self._send(part)

    def _send(self, part: bytes) -> None:
        f = self._files
        if self._upload_id is None:
            r = f._call(
                f.client.create_multipart_upload, Bucket=f.bucket, Key=self._key, Metadata={_GEN_KEY: self._gen}
            )
            self._upload_id = str(r["UploadId"])
        self._wait()  # one part in flight while the next one fills
        number = len(self._parts) + 1
        self._pending = f._pool.submit(self._upload, number, part)

    def _upload(self, number: int, part: bytes) -> dict[str, Any]:
        f = self._files
        r = f._call(
            f.client.upload_part, Bucket=f.bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=part
        )
        return {"PartNumber": number, "ETag": r["ETag"]}

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._parts.append(pending.result())

    def commit(self) -> FileInfo:
        f = self._files
        try:
            if self._upload_id is None:
                f._call(
                    f.client.put_object,
                    Bucket=f.bucket,
                    Key=self._key,
                    Body=bytes(self._buf),
                    Metadata={_GEN_KEY: self._gen},
                )
            else:
                if self._buf:
                    part, self._buf = bytes(self._buf), bytearray()
                    self._send(part)
                self._wait()
                f._call(
                    f.client.complete_multipart_upload,
                    Bucket=f.bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except BaseException:
            self.abort()
            raise
        self._done = True
        f._forget(self._run_id, self._name)
        f._collect(self._run_id, self._name)
        return FileInfo(name=self._name, size=self._size, modified=time.time())

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buf = bytearray()
        if self._pending is not None:
            try:
                self._pending.result()
            except Exception:
                pass
        if self._upload_id is not None:
            try:
                self._files.client.abort_multipart_upload(
                    Bucket=self._files.bucket, Key=self._key, UploadId=self._upload_id
                )
            except Exception:  # what is left is invisible; a bucket lifecycle rule removes it
                pass


class S3Files(FileStorage):
    """Files of runs in a bucket under a key prefix (``s3://bucket/prefix``). Thread-safe; the only state it
    keeps is a cache of how appended files are chunked, checked against the bucket on every use."""

    def __init__(self, uri: str, endpoint_url: str | None = None, client: Any = None) -> None:
        parsed = urlparse(uri)
        if parsed.scheme.lower() != "s3" or not parsed.netloc:
            raise ValidationError(f"not an S3 artifact root: {uri!r}; use s3://bucket/prefix")
        self.uri = uri
        self.bucket = parsed.netloc
        path = parsed.path.strip("/")
        self.prefix = f"{path}/" if path else ""
        if client is None:
            config = botocore.config.Config(
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=32,
                connect_timeout=5,
                read_timeout=300,  # completing a large multipart upload can take minutes
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            client = boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config)
        self.client = client
        self.endpoint = str(client.meta.endpoint_url)
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="expboard-s3")
        self._states: OrderedDict[tuple[str, str], _State] = OrderedDict()
        self._states_lock = threading.Lock()
        self._chunk_bytes: OrderedDict[str, bytes] = OrderedDict()  # small append objects' bytes, by key
        self._chunk_bytes_total = 0
        self._file_locks = [threading.Lock() for _ in range(64)]
        self._compact_queue: queue.Queue[str | None] = queue.Queue()
        self._compactor: threading.Thread | None = None
        self._compactor_lock = threading.Lock()
        self._closed = False

    # --- keys and calls ----------------------------------------------------------------------------
    def _key(self, run_id: str, name: str) -> str:
        return f"{self.prefix}{check_storage_run_id(run_id)}/{check_file_name(name)}"

    def _appends(self, run_id: str) -> str:
        return f"{self.prefix}{_APPENDS}{check_storage_run_id(run_id)}/"

    def _file_appends(self, run_id: str, name: str) -> str:
        return f"{self._appends(run_id)}{quote(check_file_name(name), safe='')}/"

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        """One S3 call; unreachable or failing storage becomes StoreUnavailableError (the server answers
        503, clients retry), bad configuration a ConfigError. Other client errors are raised as they are."""
        try:
            return fn(**kwargs)
        except botocore.exceptions.ClientError as exc:
            code, status = _code(exc), _status(exc)
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"):
                raise self._unavailable(exc) from exc
            if code == "NoSuchBucket":
                raise ConfigError(
                    f"the bucket {self.bucket!r} does not exist at {self.endpoint}: create it, or fix the artifact root"
                ) from exc
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "403"):
                raise ConfigError(
                    f"object storage {self.endpoint} refused access to s3://{self.bucket}/{self.prefix} ({code}): "
                    "check the AWS credentials the server runs with (environment, ~/.aws files or instance role)"
                ) from exc
            if code == "KeyTooLongError":
                raise ValidationError("file name too long for object storage: use a shorter name") from exc
            raise
        except botocore.exceptions.NoCredentialsError as exc:
            raise ConfigError(
                "no AWS credentials for the s3:// artifact root: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or run with an instance role"
            ) from exc
        except _CONNECTION_ERRORS as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"object storage {self.endpoint} (bucket {self.bucket!r}) is unavailable: {type(exc).__name__}: "
            f"{exc}; nothing was changed by this request, retry it"
        )

    def _pages(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self._call(self.client.list_objects_v2, Bucket=self.bucket, **kwargs, **extra)
            yield page
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    # --- state of a file -----------------------------------------------------------------------------
    def _forget(self, run_id: str, name: str) -> None:
        with self._states_lock:
            self._states.pop((run_id, name), None)

    def _remember(self, run_id: str, name: str, state: _State) -> None:
        with self._states_lock:
            self._states[(run_id, name)] = state
            self._states.move_to_end((run_id, name))
            while len(self._states) > _CACHE_SIZE:
                self._states.popitem(last=False)

    def _head(self, run_id: str, name: str) -> _State:
        try:
            head = self._call(self.client.head_object, Bucket=self.bucket, Key=self._key(run_id, name))
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _MISSING:
                return _State(gen=_NO_BASE_GEN)
            raise
        return _State(
            gen=str(head.get("Metadata", {}).get(_GEN_KEY, _NO_BASE_GEN)),
            base_size=int(head["ContentLength"]),
            base_etag=str(head["ETag"]),
            base_modified=head["LastModified"].timestamp(),
        )

    def _cached(self, run_id: str, name: str) -> _State | None:
        with self._states_lock:
            return self._states.get((run_id, name))

    def _base_from_listing(self, run_id: str, name: str, obj: dict[str, Any] | None) -> _State:
        """The whole object's part of a file's state from a listing entry (``None``: no whole object), with
        no request: the generation, which only a HEAD shows, is taken from the cache while the object's ETag
        and modification time are the ones cached (a replaced object has a new modification time); else HEAD."""
        if obj is None:
            return _State(gen=_NO_BASE_GEN)
        old = self._cached(run_id, name)
        etag, modified = str(obj["ETag"]), obj["LastModified"].timestamp()
        if old is not None and old.base_etag == etag and old.base_modified == modified:
            return _State(gen=old.gen, base_size=int(obj["Size"]), base_etag=etag, base_modified=modified)
        return self._head(run_id, name)

    def _load(
        self, run_id: str, name: str, list_new: bool = True, cached: bool = True, base: _State | None = None
    ) -> _State:
        """The file's state: its whole object (one HEAD, or ``base`` when a listing has just shown it) and
        the chain of appends, from the cache where it is still valid (same generation) plus, with
        ``list_new`` or no cache, the appends listed since."""
        state = base if base is not None else self._head(run_id, name)
        with self._states_lock:
            old = self._states.get((run_id, name)) if cached else None
        if old is not None and old.gen == state.gen:
            state.chunks = [c for c in old.chunks if c.start >= state.base_size]
            if state.chunks and state.chunks[0].start != state.base_size:
                state.chunks = []
        else:
            list_new = True
        if list_new:
            gen_prefix = f"{self._file_appends(run_id, name)}{state.gen}/"
            kwargs: dict[str, Any] = {"Prefix": gen_prefix}
            if state.chunks:
                kwargs["StartAfter"] = state.chunks[-1].key
            end = state.end
            done = False
            for page in self._pages(**kwargs):
                for obj in page.get("Contents", ()):
                    try:
                        start = int(obj["Key"][len(gen_prefix) :])
                    except ValueError:
                        continue
                    if start < end:  # compacted into the whole object already
                        continue
                    if start > end:  # not part of the chain
                        done = True
                        break
                    size = int(obj["Size"])
                    state.chunks.append(_Chunk(start, size, obj["Key"], obj["LastModified"].timestamp()))
                    end += size
                if done:
                    break
        self._remember(run_id, name, state)
        return state

    # --- the interface -------------------------------------------------------------------------------
    def open_writer(self, run_id: str, name: str) -> FileWriter:
        self._key(run_id, name)  # validates
        return _S3Writer(self, run_id, check_file_name(name))

    def append(self, run_id: str, name: str, data: bytes, offset: int) -> FileInfo:
        name = check_file_name(name)
        key = self._key(run_id, name)
        data = bytes(data)
        lock = self._file_locks[hash((run_id, name)) % len(self._file_locks)]
        with lock:
            state = self._load(run_id, name, list_new=False)
            for _attempt in range(100):
                if offset != state.end:  # someone else appended, or a retry: look at the bucket again
                    state = self._load(run_id, name, list_new=True)
                rest, end = self._resolve_append(run_id, name, data, offset, state.end)
                try:
                    if not rest:
                        if not state.exists:  # an empty file
                            self._call(
                                self.client.put_object,
                                Bucket=self.bucket,
                                Key=key,
                                Body=b"",
                                IfNoneMatch="*",
                                Metadata={_GEN_KEY: _NO_BASE_GEN},
                            )
                        return FileInfo(name=name, size=end, modified=state.modified or time.time())
                    chunk_key = f"{self._file_appends(run_id, name)}{state.gen}/{end:020d}"
                    self._call(self.client.put_object, Bucket=self.bucket, Key=chunk_key, Body=rest, IfNoneMatch="*")
                except botocore.exceptions.ClientError as exc:
                    if _code(exc) not in _PRECONDITION and _status(exc) not in (409, 412):
                        raise
                    state = self._load(run_id, name, list_new=True)  # lost a race: look again
                    continue
                now = time.time()
                if len(rest) <= _SMALL:
                    self._keep_chunk(chunk_key, rest)
                state.chunks.append(_Chunk(end, len(rest), chunk_key, now))
                self._remember(run_id, name, state)
                return FileInfo(name=name, size=end + len(rest), modified=now)
        raise StoreUnavailableError(f"too many concurrent appends to {name!r}; retry")

    def stat(self, run_id: str, name: str) -> FileInfo:
        name = check_file_name(name)
        state = self._load(run_id, name)
        if not state.exists:
            raise NotFoundError(f"run {run_id!r} has no file {name!r}")
        return FileInfo(name=name, size=state.end, modified=state.modified)

    def iter_read(self, run_id: str, name: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        return self.open_read(run_id, name, offset, length)[1]

    def open_read(
        self, run_id: str, name: str, offset: int = 0, length: int | None = None
    ) -> tuple[FileInfo, Iterator[bytes]]:
        """One look at the file for both its size and its bytes. A range inside the chain already known
        costs one HEAD and no listing: append objects never change, so the chain stays true while the HEAD
        shows the same generation and whole object (a replaced or compacted file is looked at again)."""
        name = check_file_name(name)
        self._check_range(offset, length)
        cached = self._cached(run_id, name)
        if cached is not None and cached.exists and length is not None and offset + length <= cached.end:
            head = self._head(run_id, name)
            same = head.gen == cached.gen and head.base_etag == cached.base_etag
            state = cached if same else self._load(run_id, name, base=head)
        else:
            state = self._load(run_id, name)
        if not state.exists:
            raise NotFoundError(f"run {run_id!r} has no file {name!r}")
        start = min(offset, state.end)
        stop = state.end if length is None else min(state.end, offset + length)
        info = FileInfo(name=name, size=state.end, modified=state.modified)
        return info, self._stream(run_id, name, state, start, stop)

    def presigned_url(self, run_id: str, name: str, min_size: int = 0, expires_s: int = 900) -> str | None:
        """A presigned GET URL of the file's whole object (signed with the server's credentials, at its
        endpoint), when the file is one object of at least ``min_size`` bytes; None while appended parts
        are not compacted into it yet (those are read through the server)."""
        name = check_file_name(name)
        state = self._load(run_id, name)
        if state.chunks or state.base_etag is None or state.base_size < min_size:
            return None
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._key(run_id, name)}, ExpiresIn=expires_s
            )
        )

    def _segments(self, run_id: str, name: str, state: _State, start: int, stop: int) -> builtins.list[_Segment]:
        out = []
        if state.base_etag is not None and state.base_size > start:
            out.append(_Segment(self._key(run_id, name), start, min(stop, state.base_size), 0, state.base_etag))
        for c in state.chunks:
            if c.start + c.size > start and c.start < stop:
                lo, hi = max(start, c.start) - c.start, min(stop, c.start + c.size) - c.start
                out.append(_Segment(c.key, lo, hi, c.start, size=c.size))
        return out

    def _get(self, seg: _Segment) -> Any:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": seg.key, "Range": f"bytes={seg.lo}-{seg.hi - 1}"}
        if seg.etag is not None:
            kwargs["IfMatch"] = seg.etag
        return self._call(self.client.get_object, **kwargs)["Body"]

    def _keep_chunk(self, key: str, data: bytes) -> None:
        with self._states_lock:
            if key in self._chunk_bytes:
                return
            self._chunk_bytes[key] = data
            self._chunk_bytes_total += len(data)
            while self._chunk_bytes_total > _CHUNK_CACHE_BYTES:
                self._chunk_bytes_total -= len(self._chunk_bytes.popitem(last=False)[1])

    def _kept_chunk(self, key: str) -> bytes | None:
        with self._states_lock:
            data = self._chunk_bytes.get(key)
            if data is not None:
                self._chunk_bytes.move_to_end(key)
            return data

    def _get_bytes(self, seg: _Segment) -> bytes:
        """A segment's bytes. A small append object (immutable: its key is never written twice) is fetched
        whole and kept, so the live mirror's next look at it, or at bytes this server appended, costs no
        request."""
        small = seg.etag is None and 0 < seg.size <= _SMALL
        if small:
            kept = self._kept_chunk(seg.key)
            if kept is not None:
                return kept[seg.lo : seg.hi]
            seg = _Segment(seg.key, 0, seg.size, seg.offset, size=seg.size)
        body = self._get(seg)
        try:
            data = bytes(self._call(body.read))
        finally:
            body.close()
        if small:
            self._keep_chunk(seg.key, data)
        return data

    def _pieces(self, segments: builtins.list[_Segment]) -> Iterator[tuple[_Segment, bytes]]:
        """The bytes of each segment in order; runs of small segments fetched several at a time."""
        i = 0
        while i < len(segments):
            seg = segments[i]
            if seg.hi - seg.lo < _SMALL:
                batch = [seg]
                while i + len(batch) < len(segments) and len(batch) < 32:
                    nxt = segments[i + len(batch)]
                    if nxt.hi - nxt.lo >= _SMALL:
                        break
                    batch.append(nxt)
                for s, data in zip(batch, self._pool.map(self._get_bytes, batch), strict=True):
                    yield s, data
                i += len(batch)
                continue
            body = self._get(seg)
            try:
                while True:
                    data = self._call(body.read, amt=READ_PIECE_BYTES)
                    if not data:
                        break
                    yield seg, bytes(data)
            finally:
                body.close()
            i += 1

    def _stream(self, run_id: str, name: str, state: _State, pos: int, stop: int) -> Iterator[bytes]:
        retries = 0
        while pos < stop:
            try:
                for _seg, data in self._pieces(self._segments(run_id, name, state, pos, stop)):
                    data = data[: stop - pos]
                    pos += len(data)
                    yield data
                return
            except botocore.exceptions.ClientError as exc:  # compacted or replaced while we read: look again
                if retries >= 5 or not (_code(exc) in _MISSING or _code(exc) in _PRECONDITION):
                    raise
                retries += 1
                state = self._load(run_id, name, cached=False)
                stop = min(stop, state.end)

    def list(self, run_id: str, prefix: str = "") -> list[FileInfo]:
        base = f"{self.prefix}{check_storage_run_id(run_id)}/"
        out: dict[str, FileInfo] = {}
        objects: dict[str, dict[str, Any]] = {}
        for page in self._pages(Prefix=base + prefix):
            for obj in page.get("Contents", ()):
                name = obj["Key"][len(base) :]
                objects[name] = obj
                out[name] = FileInfo(name=name, size=int(obj["Size"]), modified=obj["LastModified"].timestamp())
        appended = self._appends(run_id)
        names = []
        for page in self._pages(Prefix=appended + quote(prefix, safe=""), Delimiter="/"):
            for common in page.get("CommonPrefixes", ()):
                names.append(unquote(common["Prefix"][len(appended) : -1]))
        for name in names:  # the whole objects were just listed: one listing of new appends each, no HEAD
            try:
                state = self._load(run_id, name, base=self._base_from_listing(run_id, name, objects.get(name)))
            except ValidationError:
                continue
            if state.exists:
                out[name] = FileInfo(name=name, size=state.end, modified=state.modified)
        return [out[n] for n in sorted(out)]

    # --- compaction ----------------------------------------------------------------------------------
    def finalize(self, run_id: str) -> None:
        """Compact the run's appended files in the background (see the module docstring)."""
        check_storage_run_id(run_id)
        with self._compactor_lock:
            if self._closed:
                return
            self._compact_queue.put(run_id)
            if self._compactor is None or not self._compactor.is_alive():
                self._compactor = threading.Thread(target=self._compact_loop, name="expboard-s3-compact", daemon=True)
                self._compactor.start()

    def _compact_loop(self) -> None:
        while True:
            run_id = self._compact_queue.get()
            if run_id is None:
                return
            try:
                self.compact(run_id)
            except Exception:  # the files stay whole in their append objects; nothing is lost
                import logging

                logging.getLogger("expboard.stores.s3").warning(
                    "compacting the files of run %s failed; they stay readable as they are", run_id, exc_info=True
                )

    def compact(self, run_id: str) -> builtins.list[str]:
        """Compact every appended file of the run now; returns their names."""
        appended = self._appends(run_id)
        names = []
        for page in self._pages(Prefix=appended, Delimiter="/"):
            for common in page.get("CommonPrefixes", ()):
                names.append(unquote(common["Prefix"][len(appended) : -1]))
        for name in names:
            self._compact_file(run_id, name)
        return names

    def _compact_file(self, run_id: str, name: str) -> None:
        state = self._load(run_id, name, cached=False)
        if state.chunks:
            key = self._key(run_id, name)
            segments = self._segments(run_id, name, state, 0, state.end)
            try:
                if state.end <= PART_BYTES:
                    data = b"".join(d for _s, d in self._pieces(segments))
                    cond = {"IfMatch": state.base_etag} if state.base_etag else {"IfNoneMatch": "*"}
                    self._call(
                        self.client.put_object,
                        Bucket=self.bucket,
                        Key=key,
                        Body=data,
                        Metadata={_GEN_KEY: state.gen},
                        **cond,
                    )
                else:
                    self._compact_multipart(key, state, segments)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in _PRECONDITION or _code(exc) in _MISSING:
                    return  # changed meanwhile: leave it for the next time
                raise
            self._forget(run_id, name)
        self._collect(run_id, name)

    def _compact_multipart(self, key: str, state: _State, segments: builtins.list[_Segment]) -> None:
        upload = self._call(
            self.client.create_multipart_upload, Bucket=self.bucket, Key=key, Metadata={_GEN_KEY: state.gen}
        )
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        buf = bytearray()

        def flush() -> None:
            r = self._call(
                self.client.upload_part,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=len(parts) + 1,
                Body=bytes(buf),
            )
            parts.append({"PartNumber": len(parts) + 1, "ETag": r["ETag"]})
            buf.clear()

        try:
            for seg in segments:
                pos = seg.lo
                while pos < seg.hi:
                    if not buf and seg.hi - pos >= 5 * 1024 * 1024:  # large: copied inside the storage
                        n = min(seg.hi - pos, 4 * 1024**3)
                        source: dict[str, Any] = {
                            "CopySource": {"Bucket": self.bucket, "Key": seg.key},
                            "CopySourceRange": f"bytes={pos}-{pos + n - 1}",
                        }
                        if seg.etag is not None:
                            source["CopySourceIfMatch"] = seg.etag
                        r = self._call(
                            self.client.upload_part_copy,
                            Bucket=self.bucket,
                            Key=key,
                            UploadId=upload_id,
                            PartNumber=len(parts) + 1,
                            **source,
                        )
                        parts.append({"PartNumber": len(parts) + 1, "ETag": r["CopyPartResult"]["ETag"]})
                        pos += n
                        continue
                    n = min(seg.hi - pos, PART_BYTES - len(buf))
                    buf += self._get_bytes(_Segment(seg.key, pos, pos + n, seg.offset, seg.etag))
                    pos += n
                    if len(buf) >= PART_BYTES:
                        flush()
            if buf:
                flush()
            self._call(
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception:
                pass
            raise

    def _collect(self, run_id: str, name: str) -> None:
        """Delete append objects no longer part of the file: covered by its whole object, or of an older
        generation (the file was replaced). Best effort: leftovers are ignored by readers."""
        try:
            state = self._head(run_id, name)
            file_prefix = self._file_appends(run_id, name)
            doomed = []
            for page in self._pages(Prefix=file_prefix):
                for obj in page.get("Contents", ()):
                    gen, _, start = obj["Key"][len(file_prefix) :].partition("/")
                    if gen != state.gen or (start.isdigit() and int(start) < state.base_size):
                        doomed.append({"Key": obj["Key"]})
            for i in range(0, len(doomed), 1000):
                self._call(self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": doomed[i : i + 1000]})
        except (StoreUnavailableError, botocore.exceptions.ClientError):
            pass

    def close(self) -> None:
        with self._compactor_lock:
            self._closed = True
            compactor = self._compactor
        if compactor is not None:  # compactions already asked for are finished first (for at most a minute)
            self._compact_queue.put(None)
            compactor.join(60)
        self._pool.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"S3Files({self.uri!r}, endpoint_url={self.endpoint!r})"
