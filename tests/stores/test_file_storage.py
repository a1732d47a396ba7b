"""The file-storage contract on both implementations: a folder and S3 (moto's real server on 127.0.0.1)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from expboard.errors import ConflictError, NotFoundError, StoreUnavailableError, ValidationError
from expboard.stores.files import FileStorage, LocalFiles
from expboard.stores.storages import open_file_storage


@pytest.fixture(params=["folder", "s3"])
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FileStorage]:
    if request.param == "folder":
        storage: FileStorage = open_file_storage(tmp_path / "artifacts")
    else:
        storage = open_file_storage(request.getfixturevalue("s3_root"))
    yield storage
    storage.close()


def _rid() -> str:
    return uuid.uuid4().hex


def test_registry_chooses_by_uri(tmp_path: Path) -> None:
    assert isinstance(open_file_storage(tmp_path / "a"), LocalFiles)
    assert isinstance(open_file_storage(f"file://{tmp_path / 'b'}"), LocalFiles)
    with pytest.raises(ValidationError, match="unsupported artifact root"):
        open_file_storage("gopher://x/y")


def test_write_read_list(fs: FileStorage) -> None:
    rid = _rid()
    fs.write(rid, "outputs/model.bin", b"0123456789")
    assert fs.read(rid, "outputs/model.bin") == b"0123456789"
    assert fs.read(rid, "outputs/model.bin", 3, 4) == b"3456"
    assert fs.read(rid, "outputs/model.bin", 20) == b""
    assert fs.stat(rid, "outputs/model.bin").size == 10
    fs.write(rid, "outputs//./x.txt", b"x")  # normalized
    assert [i.name for i in fs.list(rid)] == ["outputs/model.bin", "outputs/x.txt"]
    assert [i.name for i in fs.list(rid, "outputs/m")] == ["outputs/model.bin"]
    with pytest.raises(NotFoundError):
        fs.read(rid, "nope")
    with pytest.raises(NotFoundError):
        fs.stat(rid, "nope")
    assert fs.list(_rid()) == []


def test_files_named_like_temporary_files_are_listed(fs: FileStorage) -> None:
    rid = _rid()
    fs.write(rid, ".x.tmp", b"hidden?")
    fs.append(rid, "logs/.events.tmp", b"ab", 0)
    assert [i.name for i in fs.list(rid)] == [".x.tmp", "logs/.events.tmp"]
    assert fs.read(rid, ".x.tmp") == b"hidden?"


@pytest.mark.parametrize("run_id", ["..", ".", "", "a/b", "a\\b", ".staging", ".expboard", "x" * 256, "a\x00b"])
def test_run_ids_that_could_leave_the_root_are_refused(fs: FileStorage, run_id: str) -> None:
    with pytest.raises(ValidationError):
        fs.list(run_id)
    with pytest.raises(ValidationError):
        fs.write(run_id, "a.txt", b"x")
    with pytest.raises(ValidationError):
        fs.read(run_id, "a.txt")


def test_links_out_of_the_run_are_neither_listed_nor_read(tmp_path: Path) -> None:
    fs = LocalFiles(tmp_path / "artifacts")
    rid = _rid()
    fs.write(rid, "ok.txt", b"ok")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    run_dir = tmp_path / "artifacts" / rid
    os.symlink(secret, run_dir / "link.txt")
    os.symlink(tmp_path, run_dir / "dirlink")
    os.symlink(tmp_path, tmp_path / "artifacts" / "evil")
    assert [i.name for i in fs.list(rid)] == ["ok.txt"]
    for name in ("link.txt", "dirlink/secret.txt"):
        with pytest.raises(ValidationError):
            fs.read(rid, name)
        with pytest.raises(ValidationError):
            fs.append(rid, name, b"x", 6)
    with pytest.raises(ValidationError):
        fs.list("evil")


def test_append_contract(fs: FileStorage) -> None:
    rid = _rid()
    assert fs.append(rid, "logs/ev", b"abc", 0).size == 3
    assert fs.append(rid, "logs/ev", b"def", 3).size == 6
    assert fs.append(rid, "logs/ev", b"def", 3).size == 6  # a retry: no-op
    assert fs.append(rid, "logs/ev", b"efgh", 4).size == 8  # a retry that got further: only the rest
    with pytest.raises(ConflictError):
        fs.append(rid, "logs/ev", b"xyz", 3)
    with pytest.raises(ConflictError):
        fs.append(rid, "logs/ev", b"x", 100)
    assert fs.read(rid, "logs/ev") == b"abcdefgh"
    assert fs.append(rid, "logs/empty", b"", 0).size == 0
    assert [(i.name, i.size) for i in fs.list(rid)] == [("logs/empty", 0), ("logs/ev", 8)]
    fs.write(rid, "logs/ev", b"new")  # replaced: appends continue from the new content
    assert fs.read(rid, "logs/ev") == b"new"
    assert fs.append(rid, "logs/ev", b"er", 3).size == 5
    assert fs.read(rid, "logs/ev") == b"newer"


def test_a_written_file_is_visible_whole_or_not_at_all(fs: FileStorage) -> None:
    rid = _rid()
    fs.write(rid, "model.bin", b"old")
    big = os.urandom(13 * 1024 * 1024 + 5)  # several multipart parts on S3
    writer = fs.open_writer(rid, "model.bin")
    for i in range(0, len(big), 1 << 20):
        writer.write(big[i : i + (1 << 20)])
        assert fs.read(rid, "model.bin") == b"old"
    writer.abort()
    assert fs.read(rid, "model.bin") == b"old"
    assert [i.name for i in fs.list(rid)] == ["model.bin"]
    with fs.open_writer(rid, "model.bin") as writer:
        for i in range(0, len(big), 1 << 20):
            writer.write(big[i : i + (1 << 20)])
        assert writer.commit().size == len(big)
    assert fs.read(rid, "model.bin") == big
    assert b"".join(fs.iter_read(rid, "model.bin", 5, 7 * 1024 * 1024)) == big[5 : 5 + 7 * 1024 * 1024]
    assert max(len(p) for p in fs.iter_read(rid, "model.bin")) <= 1024 * 1024


def test_concurrent_appenders_through_two_storages_lose_and_duplicate_nothing(fs: FileStorage) -> None:
    """Two storages on one root (two server processes on one bucket): a writer alternating between them."""
    other = open_file_storage(fs.uri)
    try:
        rid = _rid()
        offset = 0
        expected = b""
        for i in range(40):
            data = f"line {i}\n".encode()
            target = fs if i % 2 else other
            assert target.append(rid, "logs/driver.log", data, offset).size == offset + len(data)
            if i % 5 == 0:  # a retry through the other one is a no-op
                (other if i % 2 else fs).append(rid, "logs/driver.log", data, offset)
            offset += len(data)
            expected += data
        assert fs.read(rid, "logs/driver.log") == expected == other.read(rid, "logs/driver.log")
    finally:
        other.close()


def test_a_file_replaced_while_being_appended_to(fs: FileStorage) -> None:
    """The replace wins: readers (through either storage) see the new file whole, never the old appends
    mixed in; the appender's next append at its old offset is a ConflictError (an uploader then writes the
    file whole again); appends that fit the new file go on from its end. S3 leaves no old appends behind."""
    other = open_file_storage(fs.uri)  # the appender, on another server
    try:
        rid = _rid()
        offset = 0
        for i in range(3):
            offset = other.append(rid, "logs/ev", f"old {i};".encode(), offset).size
        assert fs.read(rid, "logs/ev") == other.read(rid, "logs/ev", 0, offset)  # both have looked at the chain
        fs.write(rid, "logs/ev", b"NEW")
        for storage in (fs, other):
            assert storage.read(rid, "logs/ev") == b"NEW"
            assert storage.read(rid, "logs/ev", 0, 3) == b"NEW"  # a range inside the old chain: still new
            assert [(i.name, i.size) for i in storage.list(rid)] == [("logs/ev", 3)]
        with pytest.raises(ConflictError, match="re-upload the whole file"):
            other.append(rid, "logs/ev", b"old 3;", offset)
        assert other.append(rid, "logs/ev", b"+more", 3).size == 8
        assert fs.read(rid, "logs/ev") == b"NEW+more"
        if hasattr(fs, "compact"):  # what the run's end starts in the background, here and now
            fs.compact(rid)
            client, bucket, prefix = fs.client, fs.bucket, fs.prefix  # type: ignore[attr-defined]
            keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
            assert [k[len(prefix) :] for k in keys] == [f"{rid}/logs/ev"]
        assert other.read(rid, "logs/ev") == b"NEW+more"
    finally:
        other.close()


def test_racing_appends_at_one_offset_store_one(fs: FileStorage) -> None:
    other = open_file_storage(fs.uri)
    rid = _rid()
    fs.append(rid, "f", b"base", 0)
    results: list[Any] = []

    def go(storage: FileStorage, data: bytes) -> None:
        try:
            results.append(storage.append(rid, "f", data, 4))
        except ConflictError as exc:
            results.append(exc)

    threads = [threading.Thread(target=go, args=(s, d)) for s, d in ((fs, b"AAAA"), (other, b"BBBB"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    other.close()
    content = fs.read(rid, "f")
    assert content in (b"baseAAAA", b"baseBBBB")
    assert sum(isinstance(r, ConflictError) for r in results) == 1


# --- S3 only -------------------------------------------------------------------------------------------
@pytest.fixture
def s3fs(s3_root: str) -> Iterator[Any]:
    from expboard.stores.s3 import S3Files

    storage = S3Files(s3_root)
    calls: list[tuple[str, int]] = []

    def count(params: Any, model: Any, **_kw: Any) -> None:
        body = params.get("Body", b"")
        if hasattr(body, "getbuffer"):  # botocore may have wrapped the bytes already
            body = body.getbuffer()
        calls.append((model.name, len(body) if hasattr(body, "__len__") else -(10**9)))

    storage.client.meta.events.register("before-parameter-build.s3", count)
    storage.calls = calls  # type: ignore[attr-defined]
    yield storage
    storage.close()


def test_s3_appends_cost_constant_requests_and_only_their_bytes(s3fs: Any) -> None:
    rid = _rid()
    piece = os.urandom(4096)
    s3fs.append(rid, "logs/events", piece, 0)
    s3fs.calls.clear()
    n = 200
    for i in range(1, n + 1):
        s3fs.append(rid, "logs/events", piece, i * 4096)
    calls = s3fs.calls
    assert len(calls) == 2 * n  # a HEAD of the whole object and one conditional PUT per append
    assert sum(size for _op, size in calls) == n * 4096  # never a rewrite
    assert {op for op, _ in calls} == {"HeadObject", "PutObject"}
    assert s3fs.read(rid, "logs/events") == piece * (n + 1)


def test_s3_live_mirror_poll_costs_listings_and_the_new_bytes_only(s3fs: Any, tmp_path: Path) -> None:
    """What a live TensorBoard mirror asks every second: the file list, then the new bytes (and a check of
    the file's head). Over S3: one listing per folder and per appended file, and one HEAD per read (no
    listing); the bytes this storage appended itself are not fetched again."""
    from expboard.stores.sql import SqlStore
    from expboard.transfer import FolderDownload

    store = SqlStore(f"sqlite:///{tmp_path / 'h.db'}", s3fs)
    exp = store.get_or_create_experiment("mirror").name
    from expboard.records import RunRecord, RunStatus

    rid = store.create_run(RunRecord(_rid(), exp, RunStatus.RUNNING, 0.0)).run_id
    mirror = FolderDownload(store, rid, tmp_path / "mirror")
    name, offset = "logs/events.out.tfevents.1", 0
    for i in range(3):
        offset = s3fs.append(rid, name, bytes([i]) * 100, offset).size
        s3fs.calls.clear()
        assert mirror.poll() == 100
        ops = [op for op, _size in s3fs.calls]
        assert ops.count("ListObjectsV2") == 3, ops  # the run's objects, its appended files, the new appends
        assert ops.count("HeadObject") == (2 if i else 1), ops  # one per read (the head check, the new bytes)
        assert ops.count("GetObject") == 0, ops  # bytes this storage appended are kept (they never change)
    assert (tmp_path / "mirror" / "events.out.tfevents.1").read_bytes() == b"".join(bytes([i]) * 100 for i in range(3))
    store.files = open_file_storage(str(tmp_path / "unused"))  # the S3 storage is the fixture's to close
    store.close()


def test_s3_compaction_makes_one_object_and_keeps_appending(s3fs: Any) -> None:
    rid = _rid()
    small = [os.urandom(1000 + i) for i in range(30)]
    big = os.urandom(6 * 1024 * 1024 + 3)  # copied inside S3, not through expboard
    offset = 0
    for part in [*small[:10], big, *small[10:]]:
        offset = s3fs.append(rid, "logs/ev", part, offset).size
    s3fs.write(rid, "outputs/whole.bin", b"w")
    expected = b"".join([*small[:10], big, *small[10:]])
    assert s3fs.compact(rid) == ["logs/ev"]
    keys = [o["Key"] for o in s3fs.client.list_objects_v2(Bucket=s3fs.bucket, Prefix=s3fs.prefix)["Contents"]]
    assert sorted(k[len(s3fs.prefix) :] for k in keys) == [f"{rid}/logs/ev", f"{rid}/outputs/whole.bin"]
    assert s3fs.read(rid, "logs/ev") == expected
    assert s3fs.append(rid, "logs/ev", b"tail", len(expected)).size == len(expected) + 4
    fresh = open_file_storage(s3fs.uri)  # another server, nothing cached
    assert fresh.read(rid, "logs/ev") == expected + b"tail"
    assert [(i.name, i.size) for i in fresh.list(rid)] == [("logs/ev", len(expected) + 4), ("outputs/whole.bin", 1)]
    fresh.close()


def test_s3_finalize_compacts_in_the_background(s3fs: Any) -> None:
    rid = _rid()
    for i in range(5):
        s3fs.append(rid, "logs/a", b"x", i)
    s3fs.finalize(rid)
    s3fs.close()  # waits for the compaction
    keys = [o["Key"] for o in s3fs.client.list_objects_v2(Bucket=s3fs.bucket, Prefix=s3fs.prefix)["Contents"]]
    assert [k[len(s3fs.prefix) :] for k in keys] == [f"{rid}/logs/a"]


def test_s3_unreachable_is_store_unavailable(tmp_path: Path, s3_endpoint: str) -> None:
    from expboard.stores.s3 import S3Files
    from s3_fixtures import free_port

    fs = S3Files("s3://expboard-tests/x", endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreUnavailableError, match="object storage .* is unavailable"):
        fs.append(_rid(), "a", b"x", 0)
    with pytest.raises(StoreUnavailableError):
        fs.list(_rid())
    fs.close()


def test_s3_missing_bucket_says_so(s3_endpoint: str) -> None:
    from expboard.errors import ConfigError
    from expboard.stores.s3 import S3Files

    fs = S3Files("s3://no-such-bucket-here/x")
    with pytest.raises(ConfigError, match="does not exist"):
        fs.write(_rid(), "a", b"x")
    fs.close()
