"""Benchmark: run files in S3 behind the tracking server, side by side with boto3 on the same S3 server.

    python bench/bench_artifacts.py [--size-mb 1024] [--appends 10000] [--latency-appends 10] [--only-latency]

Everything runs on 127.0.0.1: moto's standalone S3 server (a child process), an ``expboard server`` on
SQLite with ``--artifacts-root s3://...`` (another child process), and the clients in this process.

1. Live ``logs/`` latency, two rounds alternating a server with S3 behind it and one with a folder behind
   it: a real TensorBoard (``Tensorboard([run])``) over a Running run; an event record appended to
   ``logs/`` until TensorBoard's HTTP API serves its step (mean, p50, max; TensorBoard reloads and the
   mirror polls every second, so appends come at random phases). Next to it the part S3 can change:
   one mirror poll (file list, head check, new bytes) through the server right after a 4 KB append.
2. Upload: one ``--size-mb`` file through the server into S3 (``HttpStore.write_file_stream``, one
   streamed PUT) against boto3's own ``upload_file`` of the same file to the same S3 server (its default
   multipart transfer, 8 MiB parts on 10 threads). Ratio target >= 0.70. The server's peak memory (VmHWM)
   before and after is printed; the download back through the server is timed and checked byte for byte,
   next to boto3's ``download_file``.
3. Appends: ``--appends`` appends of 4 KB to one file through the server (a live event file), timed per
   tenth: linear means every tenth takes about as long as the first. Then the run ends and the file is
   compacted; the bytes read back are checked.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tensorboard import _wait_served
from benchcommon import free_port as _free_port
from benchcommon import uptime as _uptime

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench-key",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "expboard-bench"


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=open(os.environ.get("BENCH_MOTO_LOG", os.devnull), "ab"),  # noqa: SIM115
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=5).read()
            return proc, url
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)


def _hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _client(endpoint: str) -> Any:
    import boto3
    import botocore.config

    config = botocore.config.Config(
        max_pool_connections=32,
        read_timeout=600,  # moto joins a large multipart upload slowly on a loaded machine
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def _make_file(path: Path, size: int) -> str:
    import numpy as np

    rng = np.random.default_rng(0)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            piece = rng.bytes(min(left, 8 << 20))
            f.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(8 << 20):
            digest.update(piece)
    return digest.hexdigest()


def _run(store: Any) -> str:
    from expboard.records import RunRecord, RunStatus

    exp = store.get_or_create_experiment("bench-artifacts").name
    return str(store.create_run(RunRecord(uuid.uuid4().hex, exp, RunStatus.RUNNING, time.time())).run_id)


def bench_upload(root: Path, endpoint: str, server: Any, size: int) -> dict[str, float]:
    from expboard.stores.http import HttpStore

    src = root / "big.bin"
    digest = _make_file(src, size)
    client = _client(endpoint)
    t0 = time.perf_counter()
    client.upload_file(str(src), BUCKET, "boto3/big.bin")
    boto_up = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.download_file(BUCKET, "boto3/big.bin", str(root / "boto3.bin"))
    boto_down = time.perf_counter() - t0
    (root / "boto3.bin").unlink()
    client.delete_object(Bucket=BUCKET, Key="boto3/big.bin")

    store = HttpStore(server.url, spool_dir=root / "spool", timeout=600)
    rid = _run(store)
    store.write_file(rid, "warmup.bin", os.urandom(8 << 20))
    store.read_file(rid, "warmup.bin")
    hwm0 = _hwm_mib(server.process.pid)
    t0 = time.perf_counter()
    with open(src, "rb") as f:
        assert store.write_file_stream(rid, "outputs/big.bin", f).size == size
    ours_up = time.perf_counter() - t0
    hwm1 = _hwm_mib(server.process.pid)
    out = root / "down.bin"
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        for piece in store.iter_file(rid, "outputs/big.bin"):
            f.write(piece)
    ours_down = time.perf_counter() - t0
    hwm2 = _hwm_mib(server.process.pid)
    assert _sha256(out) == digest, "downloaded bytes differ"
    out.unlink()
    src.unlink()
    store.close()
    return {
        "boto_up": boto_up,
        "ours_up": ours_up,
        "boto_down": boto_down,
        "ours_down": ours_down,
        "hwm0": hwm0,
        "hwm1": hwm1,
        "hwm2": hwm2,
    }


def bench_appends(root: Path, server: Any, n: int) -> dict[str, Any]:
    from expboard.records import RunStatus
    from expboard.stores.http import HttpStore

    store = HttpStore(server.url, spool_dir=root / "spool-appends")
    rid = _run(store)
    piece = os.urandom(4096)
    tenth = max(1, n // 10)
    times = []
    offset = 0
    t_all = time.perf_counter()
    for _part in range(10):
        t0 = time.perf_counter()
        for _ in range(tenth):
            offset = store.append_file(rid, "logs/events.out.tfevents.bench", piece, offset).size
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all
    t0 = time.perf_counter()
    data = store.read_file(rid, "logs/events.out.tfevents.bench")
    read_s = time.perf_counter() - t0
    assert data == piece * (tenth * 10)
    store.update_run(rid, status=RunStatus.COMPLETED)  # compaction in the server's background
    store.close()
    return {"n": tenth * 10, "tenths": times, "total": total, "read_s": read_s}


def bench_latency(root: Path, server_url: str, appends: int) -> list[float]:
    from expboard import Experiment, Workspace
    from expboard.tensorboard import Tensorboard
    from expboard.tensorboard.export import run_folder_name
    from expboard.tfevents import file_version_event, frame_record, scalar_event

    ws = Workspace.init(root / f"live-{uuid.uuid4().hex[:6]}", tracking_uri=server_url)
    run = Experiment(ws, "bench-live").start_logging(display_name="live")
    name = "logs/events.out.tfevents.1700000000.bench.1.0"
    data = frame_record(file_version_event()) + frame_record(scalar_event("loss", 1.0, 0))
    ws.store.append_file(run.id, name, data, 0)
    offset = len(data)
    lat: list[float] = []
    phase = random.Random(len(server_url))
    with Tensorboard([run], local_root=str(root / f"tb-{uuid.uuid4().hex[:6]}"), port=0) as tb:
        url = tb.start()
        folder = run_folder_name(run._record)
        _wait_served(url, folder, "loss", 0, timeout=60)
        for i in range(1, appends + 1):
            time.sleep(phase.uniform(0.2, 1.2))  # out of step with the 1 s polling and reloading
            rec = frame_record(scalar_event("loss", 1.0 / (i + 1), i))
            t0 = time.perf_counter()
            ws.store.append_file(run.id, name, rec, offset)
            offset += len(rec)
            _wait_served(url, folder, "loss", i, timeout=60)
            lat.append(time.perf_counter() - t0)
    run.complete()
    ws.close()
    return lat


def bench_poll(root: Path, server_url: str, polls: int) -> list[float]:
    """The S3-dependent part of the live latency, without TensorBoard's and the mirror's 1 s phases: one
    mirror poll (file list, head check, new bytes) through the server right after each 4 KB append."""
    from expboard.stores.http import HttpStore
    from expboard.transfer import FolderDownload

    store = HttpStore(server_url, spool_dir=root / f"spool-poll-{uuid.uuid4().hex[:6]}")
    rid = _run(store)
    mirror = FolderDownload(store, rid, root / f"poll-{uuid.uuid4().hex[:6]}")
    piece = os.urandom(4096)
    offset, times = 0, []
    for _ in range(polls):
        offset = store.append_file(rid, "logs/events.out.tfevents.1700000000.poll", piece, offset).size
        t0 = time.perf_counter()
        assert mirror.poll() == len(piece)
        times.append(time.perf_counter() - t0)
    store.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--appends", type=int, default=10_000)
    parser.add_argument("--latency-appends", type=int, default=10, help="per round; two rounds each")
    parser.add_argument("--polls", type=int, default=50)
    parser.add_argument("--only-latency", action="store_true", help="skip the upload and append parts")
    parser.add_argument(
        "--fill", type=int, default=0, help="objects put into the bucket first (moto's listings scan the bucket)"
    )
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)

    from expboard.server.process import ServerProcess

    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')} {platform.machine()}, nproc {os.cpu_count()}, "
        f"python {sys.version.split()[0]}"
    )
    print(f"# before: {_uptime()}")
    moto, endpoint = _start_moto()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        _client(endpoint).create_bucket(Bucket=BUCKET)
        if args.fill:
            from concurrent.futures import ThreadPoolExecutor

            client = _client(endpoint)
            with ThreadPoolExecutor(16) as pool:
                list(
                    pool.map(
                        lambda i: client.put_object(Bucket=BUCKET, Key=f"fill/{i:06d}", Body=b"x"), range(args.fill)
                    )
                )
            print(f"# the bucket holds {args.fill:,} other objects")
        with tempfile.TemporaryDirectory(prefix="bench-artifacts-") as tmp:
            root = Path(tmp)
            s3_root = f"s3://{BUCKET}/bench"
            s3_server = ServerProcess(f"sqlite:///{root / 's3.db'}", s3_root)
            folder_server = ServerProcess(f"sqlite:///{root / 'folder.db'}", root / "artifacts")
            with s3_server as server, folder_server:
                lat: dict[str, list[float]] = {"S3": [], "folder": []}
                polls: dict[str, list[float]] = {"S3": [], "folder": []}
                for _round in range(2):  # alternated: the load moves
                    for label, srv in (("S3", s3_server), ("folder", folder_server)):
                        polls[label] += bench_poll(root, srv.url, args.polls // 2)
                        lat[label] += bench_latency(root, srv.url, args.latency_appends)
                for label in ("S3", "folder"):
                    print(
                        f"mirror poll through a server with {label} behind it ({len(polls[label])} x): p50 "
                        f"{statistics.median(polls[label]) * 1000:.0f} ms, max {max(polls[label]) * 1000:.0f} ms"
                    )
                for label in ("S3", "folder"):
                    print(
                        f"live logs/ latency, server with {label} behind it ({len(lat[label])} x): mean "
                        f"{statistics.mean(lat[label]):.2f} s, p50 {statistics.median(lat[label]):.2f} s, "
                        f"max {max(lat[label]):.2f} s"
                    )
                if args.only_latency:
                    return
                up = bench_upload(root, endpoint, server, args.size_mb << 20)
                mb = args.size_mb
                print(
                    f"upload {mb} MiB: boto3 upload_file {up['boto_up']:.1f} s ({mb / up['boto_up']:.0f} MiB/s); "
                    f"through the expboard server {up['ours_up']:.1f} s ({mb / up['ours_up']:.0f} MiB/s); "
                    f"ratio {up['boto_up'] / up['ours_up']:.2f} (target >= 0.70)"
                )
                print(
                    f"download {mb} MiB: boto3 download_file {up['boto_down']:.1f} s; through the server "
                    f"{up['ours_down']:.1f} s; ratio {up['boto_down'] / up['ours_down']:.2f}; bytes checked"
                )
                print(
                    f"server peak memory (VmHWM): {up['hwm0']:.0f} MiB before, {up['hwm1']:.0f} MiB after the "
                    f"upload, {up['hwm2']:.0f} MiB after the download"
                )
                if not args.appends:
                    return
                ap = bench_appends(root, server, args.appends)
                tenths = " ".join(f"{t:.1f}" for t in ap["tenths"])
                print(
                    f"{ap['n']:,} appends of 4 KB through the server into S3: {ap['total']:.1f} s "
                    f"({ap['n'] / ap['total']:.0f} appends/s); per tenth: {tenths} s; last/first tenth "
                    f"{ap['tenths'][-1] / ap['tenths'][0]:.2f}; read back ({ap['n'] * 4096 / 1e6:.0f} MB in "
                    f"{ap['n']} objects) {ap['read_s']:.1f} s"
                )
    finally:
        moto.terminate()
        moto.wait(30)
        print(f"# after: {_uptime()}")


if __name__ == "__main__":
    main()
