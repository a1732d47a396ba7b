"""Benchmark: writing and reading TensorBoard event files, expboard vs tensorboardX, torch, tbparse and
TensorBoard's EventAccumulator, side by side in one run.

    .venv/bin/python bench/bench_events.py            # 1,000,000 points for expboard, 100,000 for peers
    .venv/bin/python bench/bench_events.py --quick    # 200,000 / 20,000
    .venv/bin/python bench/bench_events.py --methods-only   # only add_histogram / add_image(s) / add_embedding

Scalars: peers are ~100x slower, so they are measured on fewer points (--peer-points); every figure is
points/s, so the ratios compare rates. expboard's SummaryWriter runs with its defaults, i.e. crash-safe
(events written within a second, or once max_queue=10 are waiting). Other methods: calls/s of
``add_histogram`` (10,000 normal values, default "tensorflow" bins), ``add_image`` (one 3x64x64 float
image), ``add_images`` (16 of them), ``add_embedding`` (10,000 x 128 float32), closing included. Each
measurement is the best of --repeat runs (default 1).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from expboard.tfevents import (
    EventFileWriter,
    SummaryWriter,
    event_file_name,
    file_version_event,
    frame_record,
    read_scalars,
    scalar_event,
)

TAGS = 100


def peer(module: str) -> Any:
    """A peer's module (untyped: the peers ship no type stubs)."""
    return importlib.import_module(module)


def count_points(run: Path) -> int:
    return sum(len(s.values) for s in read_scalars(run).values())


def best_rate(fn: Callable[[], int], repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def fresh(root: Path, name: str) -> Path:
    d = root / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def per_point_writer(cls: type, root: Path, name: str, n: int, tags: int) -> Callable[[], int]:
    def run() -> int:
        d = fresh(root, name)
        w = cls(str(d))
        add = w.add_scalar
        if tags == 1:
            for i in range(n):
                add("loss", i * 0.001, i)
        else:
            names = [f"metric/{k:03d}" for k in range(tags)]
            for i in range(n // tags):
                for t in names:
                    add(t, i * 0.001, i)
        w.close()
        return n

    return run


def batch_writer(root: Path, name: str, n: int, tags: int) -> Callable[[], int]:
    def run() -> int:
        d = fresh(root, name)
        steps = np.arange(n // tags)
        values = steps * 0.001
        walls = time.time() + steps * 1e-3
        with EventFileWriter(d) as w:
            for k in range(tags):
                w.add_scalars_array(f"metric/{k:03d}" if tags > 1 else "loss", steps, values, walls)
        return n

    return run


def interleaved_file(root: Path, name: str, n: int, tags: int) -> Path:
    """A run folder with one event file laid out as a training loop writes it with torch or TensorFlow: one
    record per point, step after step, every tag at each step (not timed: this is the reading input)."""
    d = fresh(root, name)
    names = ["loss"] if tags == 1 else [f"metric/{k:03d}" for k in range(tags)]
    t0 = time.time()
    with open(d / event_file_name(t0), "wb") as f:
        f.write(frame_record(file_version_event(t0)))
        for i in range(n // tags):
            f.write(b"".join(frame_record(scalar_event(t, i * 0.001, i, t0 + i * 1e-3)) for t in names))
    return d


def per_call(cls: type, root: Path, name: str, calls: int, call: Callable[[Any, int], None]) -> Callable[[], int]:
    def run() -> int:
        d = fresh(root, name)
        w = cls(str(d))
        for i in range(calls):
            call(w, i)
        w.close()
        return calls

    return run


def bench_methods(root: Path, rep: int, peers: bool, scale: float) -> dict[str, float]:
    """calls/s of the heavier SummaryWriter methods, expboard / torch / tensorboardX."""
    rng = np.random.default_rng(0)
    hist = rng.normal(size=10_000)
    img = rng.random((3, 64, 64)).astype(np.float32)
    imgs = rng.random((16, 3, 64, 64)).astype(np.float32)
    emb = rng.random((10_000, 128)).astype(np.float32)
    cases: list[tuple[str, int, Callable[[Any, int], None]]] = [
        ("add_histogram", max(1, int(200 * scale)), lambda w, i: w.add_histogram("h", hist, i)),
        ("add_image 64x64 RGB", max(1, int(300 * scale)), lambda w, i: w.add_image("i", img, i)),
        ("add_images 16x64x64 RGB", max(1, int(40 * scale)), lambda w, i: w.add_images("i", imgs, i)),
        ("add_embedding 10k x 128", 1, lambda w, i: w.add_embedding(emb, global_step=i)),
    ]
    writers: list[tuple[str, type]] = [("expboard", SummaryWriter)]
    if peers:
        from torch.utils.tensorboard import SummaryWriter as TorchWriter

        writers += [("torch", TorchWriter), ("tensorboardX", peer("tensorboardX").SummaryWriter)]
    rates: dict[str, float] = {}
    for label, calls, call in cases:
        for who, cls in writers:
            slug = f"{who}_{label.split()[0]}"
            rates[f"{who} {label}"] = best_rate(per_call(cls, root, slug, calls, call), rep)
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--peer-points", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="200,000 points, 20,000 for peers")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--methods-only", action="store_true", help="skip the scalar benchmarks")
    ap.add_argument("--methods-scale", type=float, default=1.0, help="scale the number of calls per method")
    args = ap.parse_args()
    if args.quick:
        args.points, args.peer_points = 200_000, 20_000
    n, pn, rep = args.points, args.peer_points, args.repeat
    warnings.filterwarnings("ignore")
    root = Path(tempfile.mkdtemp(prefix="bench_events_"))
    print(f"cpus={os.cpu_count()} load={os.getloadavg()}  expboard points={n:,}  peer points={pn:,}")
    rates: dict[str, float] = {}
    method_rates: dict[str, float] = {}
    try:
        method_rates = bench_methods(root, rep, not args.no_peers, args.methods_scale)
        for tags in () if args.methods_only else (1, TAGS):
            label = "1 tag" if tags == 1 else f"{TAGS} tags"
            rates[f"expboard add_scalar, {label}"] = best_rate(
                per_point_writer(SummaryWriter, root, f"ours_pp_{tags}", n, tags), rep
            )
            rates[f"expboard add_scalars_array, {label}"] = best_rate(
                batch_writer(root, f"ours_b_{tags}", n, tags), rep
            )
            if not args.no_peers:
                from torch.utils.tensorboard import SummaryWriter as TorchWriter

                tensorboardX = peer("tensorboardX")

                rates[f"tensorboardX add_scalar, {label} [{pn:,} pts]"] = best_rate(
                    per_point_writer(tensorboardX.SummaryWriter, root, f"tbx_{tags}", pn, tags), rep
                )
                rates[f"torch add_scalar, {label} [{pn:,} pts]"] = best_rate(
                    per_point_writer(TorchWriter, root, f"torch_{tags}", pn, tags), rep
                )
            # reading: expboard on the big file; peers on a peer-size file; both interleaved like a training loop
            big = interleaved_file(root, f"read_{tags}", n, tags)
            rates[f"expboard read_scalars, {label}"] = best_rate(partial(count_points, big), rep)
            if not args.no_peers:
                small = interleaved_file(root, f"small_{tags}", pn, tags)
                rates[f"expboard read_scalars, {label} [{pn:,} pts]"] = best_rate(partial(count_points, small), rep)

                def tbparse_read(small: Path = small) -> int:
                    SummaryReader = peer("tbparse").SummaryReader

                    return len(SummaryReader(str(small)).scalars)

                def accumulator_read(small: Path = small) -> int:
                    ea = peer("tensorboard.backend.event_processing.event_accumulator")

                    acc = ea.EventAccumulator(str(small), size_guidance={ea.SCALARS: 0})
                    acc.Reload()
                    return sum(len(acc.Scalars(t)) for t in acc.Tags()["scalars"])

                rates[f"tbparse read, {label} [{pn:,} pts]"] = best_rate(tbparse_read, rep)
                rates[f"EventAccumulator read, {label} [{pn:,} pts]"] = best_rate(accumulator_read, rep)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    width = max(len(k) for k in [*rates, *method_rates])
    print(f"{'measurement':<{width}}  calls/s")
    for k, v in method_rates.items():
        print(f"{k:<{width}}  {v:>12,.2f}")
    if not args.no_peers:
        print("\nratios (calls/s):")
        for label in ("add_histogram", "add_image 64x64 RGB", "add_images 16x64x64 RGB", "add_embedding 10k x 128"):
            ours = method_rates[f"expboard {label}"]
            print(
                f"  {label}: {ours / method_rates[f'torch {label}']:.1f}x torch, "
                f"{ours / method_rates[f'tensorboardX {label}']:.1f}x tensorboardX"
            )
    if rates:
        print(f"\n{'measurement':<{width}}  points/s")
    for k, v in rates.items():
        print(f"{k:<{width}}  {v:>12,.0f}")
    if rates and not args.no_peers:
        print("\nratios (rates; peers measured on fewer points):")
        for label in ("1 tag", f"{TAGS} tags"):
            ours_pp = rates[f"expboard add_scalar, {label}"]
            ours_b = rates[f"expboard add_scalars_array, {label}"]
            tbx = rates[f"tensorboardX add_scalar, {label} [{pn:,} pts]"]
            torch_r = rates[f"torch add_scalar, {label} [{pn:,} pts]"]
            rd = rates[f"expboard read_scalars, {label}"]
            tbp = rates[f"tbparse read, {label} [{pn:,} pts]"]
            acc = rates[f"EventAccumulator read, {label} [{pn:,} pts]"]
            print(
                f"  {label}: add_scalar {ours_pp / tbx:.0f}x tensorboardX, {ours_pp / torch_r:.0f}x torch; "
                f"batch {ours_b / tbx:.0f}x tensorboardX; "
                f"read {rd / tbp:.0f}x tbparse, {rd / acc:.0f}x EventAccumulator"
            )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
