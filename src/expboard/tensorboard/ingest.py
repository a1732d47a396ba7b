"""Event files a run writes under ``logs/`` ingested into the run history, incrementally by byte offset.

The compute agent streams ``./logs`` into run files as the script writes them; this module turns their
new bytes into run history, so every dashboard reads one source of truth:

- **scalars** (``simple_value`` and scalar-plugin tensors, also from torch, tensorboardX and TensorFlow)
  become metric series named by their TensorBoard tag, with the original step and wall time; those of an
  event file in a subfolder (``logs/train/...``, which TensorBoard shows as a run of its own, ``train``)
  are named ``<subfolder>/<tag>`` (``train/loss``), and the claim records it, so the data provider shows
  them as TensorBoard does: tag ``loss`` of the run ``<run>/train``;
- **everything else** (histograms, images, text, audio, PR curves, HParams, graphs) is indexed: per value
  its tag, step, wall time and where its record lies in the event file (which is stored already), plus the
  tag's summary metadata. The data provider serves them as tensors and blobs by reading just those records.

Progress is kept in the store itself, in one append-only run file per event file
(``.tensorboard/ingest/<event file>.jsonl``): each line claims the next byte range ``[start, end)`` of
complete records and carries the index entries found there. A line is appended with the store's
compare-and-append (an offset that must equal the current size), so two ingesting processes never claim
the same range twice. The range's scalars are then logged with a batch id naming the range, and after a
restart the last claimed range is logged again under the same id (a no-op if it was stored), so a crash
between the two loses nothing. Bytes are read once: each pass reads from the last claimed end.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2  # type: ignore[import-untyped]
from tensorboard.util import tensor_util  # type: ignore[import-untyped]

from tensorboard import data_compat, dataclass_compat  # type: ignore[import-untyped]

from ..errors import ConflictError, ExpboardError, NotFoundError
from ..records import MetricKind
from ..stores.base import MetricChunk, Store
from ..tfevents import is_event_file, masked_crc32c

__all__ = [
    "INGEST_PREFIX",
    "EventIngester",
    "IndexEntry",
    "decode_value",
    "ingest_state_name",
    "subfolder",
]

_log = logging.getLogger("expboard.tensorboard.ingest")
INGEST_PREFIX = ".tensorboard/ingest/"
LOGS_PREFIX = "logs/"
_HEADER = struct.Struct("<QI")
_MAX_READ = 16 * 1024 * 1024  # bytes of one event file read per pass


def subfolder(event_file: str) -> str:
    """The folder of an event file below ``logs/`` ("" for ``logs/`` itself): TensorBoard's run name for it,
    relative to the run's own (``logs/train/events.out...`` -> ``train``)."""
    folder = event_file[len(LOGS_PREFIX) :] if event_file.startswith(LOGS_PREFIX) else event_file
    return folder.rpartition("/")[0]


def ingest_state_name(event_file: str) -> str:
    """The run file holding the ingest progress and index of ``event_file``."""
    return INGEST_PREFIX + event_file + ".jsonl"


@dataclass(frozen=True)
class IndexEntry:
    """A non-scalar summary value found in an event file: read it back with :func:`decode_value`."""

    file: str  # the event file (run file name)
    tag: str
    plugin: str
    data_class: int  # summary_pb2.DATA_CLASS_TENSOR or DATA_CLASS_BLOB_SEQUENCE
    step: int
    wall_time: float
    offset: int  # the framed record's first byte in the file
    length: int  # the framed record's length
    blobs: int = 0  # blob sequences: how many blobs the value holds


@dataclass
class _FileState:
    size: int = 0  # bytes of the state file read so far
    end: int = 0  # end of the last claimed range
    last: tuple[int, int] | None = None  # the last claimed range, logged again once per process
    confirmed: bool = False
    metadata: dict[str, summary_pb2.SummaryMetadata] = field(default_factory=dict)
    entries: list[IndexEntry] = field(default_factory=list)
    series: dict[str, str] = field(default_factory=dict)  # a subfolder's metric series -> its TensorBoard tag


def _frames(data: bytes, base: int) -> Iterator[tuple[int, int, bytes]]:
    """Complete, intact records in ``data`` (which starts at file offset ``base``): (offset, length, payload).
    Stops at the first incomplete record (the writer is still writing it)."""
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, len_crc = _HEADER.unpack_from(data, pos)
        if masked_crc32c(data[pos : pos + 8]) != len_crc:
            raise ExpboardError(f"corrupt event record length at byte {base + pos}")
        end = pos + _HEADER.size + length + 4
        if end > len(data):
            return
        payload = data[pos + _HEADER.size : end - 4]
        yield base + pos, end - pos, payload
        pos = end


def _migrated(payload: bytes, metadata: dict[str, Any]) -> list[Any]:
    event = event_pb2.Event.FromString(payload)
    out = []
    for e in dataclass_compat.migrate_event(data_compat.migrate_event(event), metadata):
        if e.WhichOneof("what") == "summary":
            out.append(e)
    return out


def decode_value(payload: bytes, tag: str, metadata: summary_pb2.SummaryMetadata) -> Any:
    """The migrated ``Summary.Value`` of ``tag`` in an event record's payload (None if it has none)."""
    initial = {tag: metadata}
    for e in _migrated(payload, initial):
        for v in e.summary.value:
            if v.tag == tag:
                return v
    return None


class EventIngester:
    """Ingests the event files of runs (under ``logs/``) into ``store``; thread-safe, one pass at a time."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._states: dict[tuple[str, str], _FileState] = {}
        self._run_files: dict[str, dict[str, _FileState]] = {}  # the same states by run
        self._lock = threading.Lock()

    # --- reading the index ------------------------------------------------------------------------
    def _load(self, run_id: str, event_file: str) -> _FileState:
        """The state of one event file, brought up to date with lines appended since the last look."""
        st = self._states.get((run_id, event_file))
        if st is None:
            st = self._states[(run_id, event_file)] = _FileState()
            self._run_files.setdefault(run_id, {})[event_file] = st
        try:
            new = self.store.read_file(run_id, ingest_state_name(event_file), offset=st.size)
        except NotFoundError:
            return st
        complete = new[: new.rfind(b"\n") + 1]
        for line in complete.splitlines():
            claim = json.loads(line)
            st.end, st.last = int(claim["end"]), (int(claim["start"]), int(claim["end"]))
            st.series.update(claim.get("scalars", {}))
            for tag, md in claim.get("metadata", {}).items():
                st.metadata[tag] = summary_pb2.SummaryMetadata.FromString(base64.b64decode(md))
            for tag, offset, length, step, wall, blobs in claim.get("values", []):
                md = st.metadata.get(tag)
                if md is None:
                    continue
                plugin = md.plugin_data.plugin_name
                st.entries.append(IndexEntry(event_file, tag, plugin, md.data_class, step, wall, offset, length, blobs))
        st.size += len(complete)
        return st

    def index(self, run_id: str) -> tuple[list[IndexEntry], dict[str, summary_pb2.SummaryMetadata]]:
        """Every non-scalar value ingested so far from the run's event files, and each tag's metadata."""
        entries: list[IndexEntry] = []
        metadata: dict[str, summary_pb2.SummaryMetadata] = {}
        names = [f.name for f in self.store.list_files(run_id, INGEST_PREFIX) if f.name.endswith(".jsonl")]
        with self._lock:
            for name in names:
                st = self._load(run_id, name[len(INGEST_PREFIX) : -len(".jsonl")])
                entries += st.entries
                for tag, md in st.metadata.items():
                    metadata.setdefault(tag, md)
        return entries, metadata

    def subruns(self, run_id: str) -> dict[str, dict[str, str]]:
        """The subfolders of the run's ``logs/`` ingested so far (TensorBoard runs of their own), each with its
        metric series and their tags. From what this process has loaded (its ingest passes), no store read."""
        out: dict[str, dict[str, str]] = {}
        with self._lock:
            for event_file, st in self._run_files.get(run_id, {}).items():
                sub = subfolder(event_file)
                if sub and st.end:
                    out.setdefault(sub, {}).update(st.series)
        return out

    def read_value(self, run_id: str, entry: IndexEntry, metadata: summary_pb2.SummaryMetadata) -> Any:
        """The migrated ``Summary.Value`` of an index entry, read from its event file."""
        record = self.store.read_file(run_id, entry.file, offset=entry.offset, length=entry.length)
        return decode_value(record[_HEADER.size : -4], entry.tag, metadata)

    # --- ingesting --------------------------------------------------------------------------------
    def ingest_run(self, run_id: str) -> tuple[int, bool]:
        """One pass over a run's event files: returns (points and values ingested, whether all is in)."""
        files = [f for f in self.store.list_files(run_id, LOGS_PREFIX) if is_event_file(f.name)]
        total, caught_up = 0, True
        with self._lock:
            for info in files:
                n, done = self._ingest_file(run_id, info.name, info.size)
                total += n
                caught_up = caught_up and done
        return total, caught_up

    def _parse(
        self, run_id: str, event_file: str, start: int, data: bytes, metadata: dict[str, Any]
    ) -> tuple[int, list[MetricChunk], list[list[Any]], dict[str, str]]:
        """Records in ``data``: (bytes consumed, scalar chunks, index entries, metadata of new tags). Scalars
        of a file in a subfolder go to series ``<subfolder>/<tag>``."""
        scalars: dict[str, tuple[list[int], list[float], list[float]]] = {}
        values: list[list[Any]] = []
        new_metadata: dict[str, str] = {}
        consumed = 0
        initial = dict(metadata)  # TensorBoard's migration keeps each tag's first metadata here
        for offset, length, payload in _frames(data, start):
            consumed = offset + length - start
            for e in _migrated(payload, initial):
                for v in e.summary.value:
                    if v.tag not in metadata:  # the first (migrated, so with its data class) metadata of a tag
                        first = v.metadata if v.HasField("metadata") else initial.get(v.tag)
                        metadata[v.tag] = first if first is not None else summary_pb2.SummaryMetadata()
                        new_metadata[v.tag] = base64.b64encode(metadata[v.tag].SerializeToString()).decode()
                    md = metadata[v.tag]
                    if md.data_class == summary_pb2.DATA_CLASS_SCALAR:
                        s = scalars.setdefault(v.tag, ([], [], []))
                        s[0].append(int(e.step))
                        s[1].append(float(e.wall_time))
                        s[2].append(float(tensor_util.make_ndarray(v.tensor).item()))
                    elif md.data_class in (summary_pb2.DATA_CLASS_TENSOR, summary_pb2.DATA_CLASS_BLOB_SEQUENCE):
                        blobs = len(v.tensor.string_val) if md.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE else 0
                        values.append([v.tag, offset, length, int(e.step), float(e.wall_time), blobs])
        sub = subfolder(event_file)
        chunks = [
            MetricChunk(
                run_id, _series(sub, tag), MetricKind.SCALAR, np.array(s), np.array(w), np.array(x, dtype=np.float64)
            )
            for tag, (s, w, x) in scalars.items()
        ]
        return consumed, chunks, values, new_metadata

    def _log(self, run_id: str, event_file: str, start: int, end: int, chunks: Sequence[MetricChunk]) -> None:
        self.store.log_metrics(list(chunks), batch_id=f"tb-ingest:{run_id}:{event_file}:{start}:{end}")

    def _ingest_file(self, run_id: str, event_file: str, size: int) -> tuple[int, bool]:
        st = self._load(run_id, event_file)
        if not st.confirmed and st.last is not None:  # a crash may have come between claim and log
            start, end = st.last
            data = self.store.read_file(run_id, event_file, offset=start, length=end - start)
            _, chunks, _, _ = self._parse(run_id, event_file, start, data, dict(st.metadata))
            self._log(run_id, event_file, start, end, chunks)
        st.confirmed = True
        if size < st.end:
            _log.warning("%s of run %s is shorter than what was ingested; it is not ingested again", event_file, run_id)
            return 0, True
        if size == st.end:
            return 0, True
        data = self.store.read_file(run_id, event_file, offset=st.end, length=min(size - st.end, _MAX_READ))
        metadata = dict(st.metadata)
        consumed, chunks, values, new_metadata = self._parse(run_id, event_file, st.end, data, metadata)
        if not consumed:
            return 0, False
        start, end = st.end, st.end + consumed
        claim: dict[str, Any] = {"start": start, "end": end, "metadata": new_metadata, "values": values}
        sub = subfolder(event_file)
        if sub:  # which series hold which tag of the subfolder's run
            claim["scalars"] = {c.name: c.name[len(sub) + 1 :] for c in chunks if c.name not in st.series}
        line = json.dumps(claim) + "\n"
        try:
            self.store.append_file(run_id, ingest_state_name(event_file), line.encode(), offset=st.size)
        except ConflictError:  # another process claimed this range: read its claim next pass
            return 0, False
        self._log(run_id, event_file, start, end, chunks)
        self._load(run_id, event_file)
        return sum(len(c) for c in chunks) + len(values), end >= size


def _series(sub: str, tag: str) -> str:
    return f"{sub}/{tag}" if sub else tag
