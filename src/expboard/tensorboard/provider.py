"""A TensorBoard data provider over the run history: TensorBoard reads the store itself, no event files.

>>> server = DataProviderServer(ws.store, experiments=["ridge-sweep"])   # doctest: +SKIP
>>> server.start()                                                      # doctest: +SKIP
'127.0.0.1:40123'
>>> # tensorboard --grpc_data_provider 127.0.0.1:40123                  # doctest: +SKIP

The gRPC service ``tensorboard.data.TensorBoardDataProvider`` (stubs from the tensorboard package) is
answered from the :class:`~expboard.stores.base.Store` interface, so it works over SQLite, PostgreSQL and a
tracking server alike. What TensorBoard sees:

- **Runs**: one per expboard run, named as ``export_to_tensorboard`` names its folders
  (``<name>_<id8>``, child runs nested as ``<parent>/<child>``), plus ``.`` holding the HParams experiment
  when there are sessions. ``/experiment/<name>/`` in TensorBoard's URL selects the expboard experiment
  ``<name>`` (every run of it); the root URL shows what the server was started with (runs and/or
  experiments). Runs are listed afresh on every request: a new run appears without a restart.
- **Metrics**: mapped by :func:`expboard.tensorboard._convert.split_series`, the mapping the export uses
  (numbers as scalars, tables and rows as ``name/column``, strings as text, images as image blobs).
- **HParams**: sessions, hyperparameters and metrics by :func:`expboard.tensorboard.sessions.plan_sessions`,
  the export's rule, from metric summaries (no points read).
- **Downsampling** happens in the store (``get_metrics(max_points=...)`` thins in SQL), always keeping the
  first and the last point; a read of one point per series (HParams) comes from one summary query. A
  thinned read is kept (bounded, least recently used out) while the series' summary is unchanged, so
  TensorBoard's repeated reads of the same series cost no store call.
- **Subfolders** of a run's ``logs/`` are runs of their own (``<run>/train``), as in a logdir.
- **The root URL** shows what the server was started with; started with nothing (a team TensorBoard), the
  newest top-level runs of all experiments as ``<experiment>/<run>``. TensorBoard's page names its root
  ``defaultExperimentId`` in its requests; that id means the root here.

Errors reach TensorBoard as gRPC statuses (NOT_FOUND for an unknown experiment, UNAVAILABLE when the store
is down), which its HTTP API answers with an error; it recovers by itself once the store or the provider
is back (what is kept between requests, thinned reads, is checked against the store on each one).
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped]
import numpy as np
from tensorboard.compat.proto import summary_pb2  # type: ignore[import-untyped]
from tensorboard.data.proto import data_provider_pb2 as pb  # type: ignore[import-untyped]
from tensorboard.data.proto import data_provider_pb2_grpc as pb_grpc

from ..errors import ExpboardError, NotFoundError, StoreUnavailableError, ValidationError
from ..liveness import reap_unresponsive
from ..records import MetricKind, RunRecord
from ..stores.base import MetricInfo, Store
from ..tfevents import image_size, text_table_value, text_value
from ._convert import TagNamer, TagPoints, split_series
from .export import run_folder_name
from .ingest import EventIngester, IndexEntry, subfolder
from .sessions import SessionCandidate, SessionPlan, plan_sessions

__all__ = ["RUN_TABLE_METHOD", "DataProviderServer", "StoreDataProvider"]

_log = logging.getLogger("expboard.tensorboard.provider")
# kinds shown as text tables (and, but for confusion matrices, scalar curves)
_TABLE_KINDS = (MetricKind.CONFUSION_MATRIX, MetricKind.ACCURACY_TABLE, MetricKind.PREDICTIONS, MetricKind.RESIDUALS)
T = TypeVar("T")

SCALARS, TEXT, IMAGES, HPARAMS = "scalars", "text", "images", "hparams"
EXPERIMENT_RUN = "."  # the run holding the HParams experiment, as in an export's logdir root
RUN_TABLE_METHOD = "/expboard.RunTable/List"  # JSON in, JSON out: the "Runs" tab's data (see plugin.py)
_BLOB_CHUNK = 1 << 20
# TensorBoard's frontend names its root URL's experiment so in every request it makes (/experiment/<id>/...):
# it selects what the root shows, never an expboard experiment of that name
DEFAULT_EXPERIMENT_ID = "defaultExperimentId"
ROOT_RUNS = 100  # with nothing selected, the root shows the newest top-level runs of all experiments, this many


def _metadata(plugin: str, content: bytes = b"") -> summary_pb2.SummaryMetadata:
    md = summary_pb2.SummaryMetadata()
    md.plugin_data.plugin_name = plugin
    md.plugin_data.content = content
    if plugin == SCALARS:
        md.data_class = summary_pb2.DATA_CLASS_SCALAR
    elif plugin == IMAGES:
        md.data_class = summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    else:
        md.data_class = summary_pb2.DATA_CLASS_TENSOR
    return md


def _value(encoded: bytes) -> summary_pb2.Summary.Value:
    return summary_pb2.Summary.Value.FromString(encoded)


def _encode_key(parts: list[Any]) -> str:
    raw = json.dumps(parts, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _blob_key(run_id: str, file_name: str, part: int) -> str:
    """An image logged with ``log_image``: part 0 its width, 1 its height, 2 the file."""
    return _encode_key([run_id, file_name, part])


def _decode_key(key: str) -> list[Any]:
    try:
        parts = json.loads(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)))
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"not a blob key of this provider: {key!r}") from exc
    if not isinstance(parts, list) or len(parts) not in (3, 6):
        raise ValidationError(f"not a blob key of this provider: {key!r}")
    return parts


# --------------------------------------------------------------------------------------------- the view
@dataclass
class _Run:
    name: str  # TensorBoard's run name
    record: RunRecord
    depth: int
    sub: str = ""  # a subfolder of the run's logs/ (a TensorBoard run of its own, as in a logdir)
    series: dict[str, str] = field(default_factory=dict)  # its ingested metric series -> their tags


@dataclass
class _Tag:
    """One tag of one run: where its points come from."""

    plugin: str
    max_step: int
    max_wall_time: float
    metric: str | None = None  # a numeric series read straight from the store (downsampled there)
    info: MetricInfo | None = None
    points: TagPoints | None = None  # computed from a whole (JSON) series
    tensor: tuple[bytes, float] | None = None  # an HParams summary value (encoded) and its wall time
    max_length: int = 0
    entries: list[IndexEntry] | None = None  # values ingested from the run's event files
    summary_metadata: Any = None  # their tag's metadata


@dataclass
class _View:
    """What one request sees: the selected runs, their metric summaries and the HParams plan."""

    runs: dict[str, _Run]
    infos: dict[str, list[MetricInfo]]
    plan: SessionPlan
    created: float
    moved: dict[str, set[str]] = field(default_factory=dict)  # run id -> its series shown in logs/ subfolder runs
    _tags: dict[str, dict[str, _Tag]] = field(default_factory=dict)


class StoreDataProvider(pb_grpc.TensorBoardDataProviderServicer):  # type: ignore[misc]
    """The servicer. ``run_ids`` and ``experiments``: what the empty experiment id (TensorBoard's root URL)
    shows; ``hparams``: as in ``export_to_tensorboard``."""

    def __init__(
        self,
        store: Store,
        run_ids: Sequence[str] = (),
        experiments: Sequence[str] = (),
        *,
        hparams: Sequence[str] | None = None,
    ) -> None:
        self.store = store
        self.run_ids = list(run_ids)
        self.experiments = list(experiments)
        self.hparams = hparams
        self.ingester = EventIngester(store)
        self.thinned = _ThinnedCache()
        self.seen: dict[str, bool] = {}  # run ids requests have shown (what to ingest) -> whether it has ended
        self.ingested: set[str] = set()  # ended runs whose event files are all in

    # --- selection -----------------------------------------------------------------------------------
    @property
    def everything(self) -> bool:
        """Whether the root shows the newest runs of every experiment (nothing selected: a team TensorBoard)."""
        return not self.run_ids and not self.experiments

    def _records(self, experiment_id: str) -> list[tuple[RunRecord, int]]:
        """(record, depth) of the selected runs and all their descendants, parents before children."""
        experiment_id = _experiment_name(experiment_id)
        if experiment_id:
            self.store.get_experiment(experiment_id)  # NotFoundError names the experiment
            named, explicit = [experiment_id], []
        elif self.everything:  # one page of the store's newest-first listing: the cost never grows with history
            page = self.store.query_runs(parent_id=None, limit=ROOT_RUNS)
            return [(r, 0) for r in page.runs]
        else:
            named, explicit = self.experiments, [self.store.get_run(r) for r in self.run_ids]
        listed: list[RunRecord] = []
        for exp in dict.fromkeys([*named, *(r.experiment for r in explicit)]):
            listed += self.store.list_runs(experiment=exp)
        children: dict[str | None, list[RunRecord]] = {}
        for r in listed:
            children.setdefault(r.parent_id, []).append(r)
        for kids in children.values():
            kids.sort(key=lambda r: (r.created, r.run_id))
        tops = [*explicit, *(r for r in children.get(None, []) if r.experiment in named)]
        out: list[tuple[RunRecord, int]] = []
        seen: set[str] = set()
        todo = [(r, 0) for r in tops]
        while todo:
            record, depth = todo.pop(0)
            if record.run_id in seen:
                continue
            seen.add(record.run_id)
            out.append((record, depth))
            todo.extend((c, depth + 1) for c in children.get(record.run_id, []))
        return out

    def _view(self, experiment_id: str) -> _View:
        records = self._records(experiment_id)
        prefixed = self.everything and not _experiment_name(experiment_id)  # runs of many experiments
        names: dict[str, str] = {}
        runs: dict[str, _Run] = {}
        for record, depth in records:
            folder = run_folder_name(record)
            parent = names.get(record.parent_id or "") if depth else None
            name = f"{parent}/{folder}" if parent else (f"{record.experiment}/{folder}" if prefixed else folder)
            names[record.run_id] = name
            runs[name] = _Run(name, record, depth)
        infos: dict[str, list[MetricInfo]] = {r.record.run_id: [] for r in runs.values()}
        self.seen.update((r.record.run_id, r.record.status.is_terminal) for r in runs.values())
        for info in self.store.get_metric_info(list(infos)):
            infos[info.run_id].append(info)
        candidates, subruns, moved = [], {}, {}
        for run in runs.values():
            subs = self.ingester.subruns(run.record.run_id)  # what ingest passes found: no store read
            elsewhere = moved[run.record.run_id] = {name for series in subs.values() for name in series}
            run_infos = [i for i in infos[run.record.run_id] if i.name not in elsewhere]
            candidates.append(SessionCandidate(run.record, run.depth, run_infos))
            for sub, series in sorted(subs.items()):
                subruns[f"{run.name}/{sub}"] = _Run(f"{run.name}/{sub}", run.record, run.depth, sub, series)
        plan = plan_sessions(candidates, self.hparams)
        return _View({**runs, **subruns}, infos, plan, time.time(), moved)

    def _tags(self, view: _View, run_name: str, plugin: str) -> dict[str, _Tag]:
        """The tags of a run a plugin may ask for (computed once per request, run and plugin): whole JSON
        series are read only for scalars, text and images, the event-file index only for what is not scalars
        (ingested scalars are metric series already) or HParams."""
        key = f"{plugin}\0{run_name}"
        cached = view._tags.get(key)
        if cached is not None:
            return cached
        tags: dict[str, _Tag] = {}
        if run_name == EXPERIMENT_RUN:
            if view.plan.hparams:
                tags["_hparams_/experiment"] = _Tag(
                    HPARAMS, 0, view.created, tensor=(view.plan.experiment_value(view.created), view.created)
                )
            view._tags[key] = tags
            return tags
        run = view.runs[run_name]
        namer = TagNamer()
        # series of the run's logs/ subfolders belong to those runs (a subfolder's tag names are its own)
        own = run.series if run.sub else {}
        elsewhere = set() if run.sub else view.moved.get(run.record.run_id, set())
        started = view.plan.start_value(run.record) if not run.sub else None
        if started is not None:
            tags["_hparams_/session_start_info"] = _Tag(HPARAMS, 0, started[1], tensor=started)
        ended = view.plan.end_value(run.record, now=view.created) if not run.sub else None
        if ended is not None:
            tags["_hparams_/session_end_info"] = _Tag(HPARAMS, 0, ended[1], tensor=ended)
        complex_names = []
        for info in view.infos[run.record.run_id]:
            if info.name in elsewhere or (run.sub and info.name not in own):
                continue
            if info.numeric and info.kind in (MetricKind.SCALAR, MetricKind.LIST):
                tag = namer(own.get(info.name, info.name), SCALARS)
                tags[tag] = _Tag(SCALARS, info.max_step, info.last_wall_time, metric=info.name, info=info)
            else:
                complex_names.append(info.name)
        if plugin == HPARAMS:
            view._tags[key] = tags
            return tags
        entries, metadata = self.ingester.index(run.record.run_id) if plugin != SCALARS else ([], {})
        by_tag: dict[str, list[IndexEntry]] = {}
        for entry in entries:
            if subfolder(entry.file) == run.sub:
                by_tag.setdefault(entry.tag, []).append(entry)
        for t, items in by_tag.items():
            md = metadata[t]
            blob = md.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
            items.sort(key=lambda e: (e.step, e.offset))
            tags[namer(t, md.plugin_data.plugin_name)] = _Tag(
                md.plugin_data.plugin_name,
                max(e.step for e in items),
                max(e.wall_time for e in items),
                max_length=max(e.blobs for e in items) if blob else 0,
                entries=items,
                summary_metadata=md,
            )
        for name in complex_names if plugin in (SCALARS, TEXT, IMAGES) else []:
            for series in self.store.get_metrics(run.record.run_id, name):
                parts, _ = split_series(series.kind, series.name, series.steps, series.wall_times, series.values)
                for part in parts:
                    tag = namer(part.tag, part.plugin)
                    plugin = TEXT if part.plugin == "text_table" else part.plugin
                    tags[tag] = _Tag(
                        plugin,
                        int(part.steps.max()),
                        float(part.wall_times.max()),
                        points=part,
                        max_length=3 if plugin == IMAGES else 0,
                    )
        view._tags[key] = tags
        return tags

    def _run_names(self, view: _View, rtf: pb.RunTagFilter) -> list[str]:
        names = [*view.runs, *([EXPERIMENT_RUN] if view.plan.hparams else [])]
        if rtf.HasField("runs"):
            wanted = set(rtf.runs.names)
            names = [n for n in names if n in wanted]
        return names

    def _selected(self, view: _View, rtf: pb.RunTagFilter, plugin: str) -> Iterator[tuple[str, dict[str, _Tag]]]:
        wanted = set(rtf.tags.names) if rtf.HasField("tags") else None
        for run_name in self._run_names(view, rtf):
            tags = {
                t: tag
                for t, tag in self._tags(view, run_name, plugin).items()
                if tag.plugin == plugin and (wanted is None or t in wanted)
            }
            if tags:
                yield run_name, tags

    # --- RPCs ----------------------------------------------------------------------------------------
    def GetExperiment(self, request: pb.GetExperimentRequest, context: grpc.ServicerContext) -> Any:
        def answer() -> pb.GetExperimentResponse:
            res = pb.GetExperimentResponse(data_location="expboard run history")
            name = _experiment_name(request.experiment_id)
            if name:
                exp = self.store.get_experiment(name)
                res.name = exp.name
                res.creation_time.FromNanoseconds(int(exp.created * 1e9))
            elif self.everything:
                res.name = f"the newest {ROOT_RUNS} runs of all experiments"
            else:
                res.name = ", ".join(self.experiments) or "expboard runs"
            return res

        return _guard(context, answer)

    def ListPlugins(self, request: pb.ListPluginsRequest, context: grpc.ServicerContext) -> Any:
        def answer() -> pb.ListPluginsResponse:
            view = self._view(request.experiment_id)
            plugins: set[str] = set()
            if view.plan.hparams:
                plugins.add(HPARAMS)
            for run in view.runs.values():
                if run.sub:
                    continue  # its run's index has it
                _, metadata = self.ingester.index(run.record.run_id)
                plugins.update(md.plugin_data.plugin_name for md in metadata.values())
            for infos in view.infos.values():
                for info in infos:
                    if info.kind is MetricKind.IMAGE:
                        plugins.add(IMAGES)
                    elif info.kind in _TABLE_KINDS or (
                        not info.numeric and info.kind in (MetricKind.SCALAR, MetricKind.LIST)
                    ):
                        plugins.update((SCALARS, TEXT))
                    else:
                        plugins.add(SCALARS)
            return pb.ListPluginsResponse(plugins=[pb.Plugin(name=p) for p in sorted(plugins)])

        return _guard(context, answer)

    def ListRuns(self, request: pb.ListRunsRequest, context: grpc.ServicerContext) -> Any:
        def answer() -> pb.ListRunsResponse:
            view = self._view(request.experiment_id)
            res = pb.ListRunsResponse()
            for run in view.runs.values():
                res.runs.add(name=run.name, start_time=run.record.start_time or run.record.created)
            if view.plan.hparams:
                res.runs.add(name=EXPERIMENT_RUN, start_time=view.created)
            return res

        return _guard(context, answer)

    def ListScalars(self, request: pb.ListScalarsRequest, context: grpc.ServicerContext) -> Any:
        return _guard(context, lambda: self._list(request, pb.ListScalarsResponse()))

    def ListTensors(self, request: pb.ListTensorsRequest, context: grpc.ServicerContext) -> Any:
        return _guard(context, lambda: self._list(request, pb.ListTensorsResponse()))

    def ListBlobSequences(self, request: pb.ListBlobSequencesRequest, context: grpc.ServicerContext) -> Any:
        return _guard(context, lambda: self._list(request, pb.ListBlobSequencesResponse()))

    def _list(self, request: Any, res: Any) -> Any:
        view = self._view(request.experiment_id)
        plugin = request.plugin_filter.plugin_name
        for run_name, tags in self._selected(view, request.run_tag_filter, plugin):
            entry = res.runs.add(run_name=run_name)
            for t, tag in tags.items():
                item = entry.tags.add(tag_name=t)
                item.metadata.max_step = tag.max_step
                item.metadata.max_wall_time = tag.max_wall_time
                if tag.tensor is not None:
                    item.metadata.summary_metadata.CopyFrom(_value(tag.tensor[0]).metadata)
                elif tag.summary_metadata is not None:
                    item.metadata.summary_metadata.CopyFrom(tag.summary_metadata)
                else:
                    item.metadata.summary_metadata.CopyFrom(_metadata(plugin))
                if tag.max_length:
                    item.metadata.max_length = tag.max_length
        return res

    def ReadScalars(self, request: pb.ReadScalarsRequest, context: grpc.ServicerContext) -> Any:
        def answer() -> pb.ReadScalarsResponse:
            view = self._view(request.experiment_id)
            num_points = request.downsample.num_points
            res = pb.ReadScalarsResponse()
            for run_name, tags in self._selected(view, request.run_tag_filter, request.plugin_filter.plugin_name):
                entry = res.runs.add(run_name=run_name)
                run_id = view.runs[run_name].record.run_id
                read: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
                missing = []
                for tag in tags.values():
                    if tag.metric is not None and tag.info is not None and num_points > 1:
                        hit = self.thinned.get(tag.info, num_points)
                        if hit is None:
                            missing.append(tag)
                        else:
                            read[tag.metric] = hit
                if missing:  # thinned in the store: one series by name, or all of the run's in one call
                    name = missing[0].metric if len(missing) == 1 else None
                    by_name = {s.name: s for s in self.store.get_metrics(run_id, name, max_points=num_points)}
                    for tag in missing:
                        assert tag.metric is not None and tag.info is not None
                        series = by_name.get(tag.metric)
                        if series is not None:
                            read[tag.metric] = self.thinned.put(tag.info, num_points, series)
                for t, tag in tags.items():
                    item = entry.tags.add(tag_name=t)
                    if num_points <= 0:
                        continue
                    if tag.metric is not None and num_points == 1:
                        assert tag.info is not None
                        info = tag.info
                        item.data.step.append(info.last_step)
                        item.data.wall_time.append(info.last_wall_time)
                        item.data.value.append(float(info.last_value))
                        continue
                    if tag.metric is not None:
                        if tag.metric not in read:
                            continue
                        steps, walls, values = read[tag.metric]
                    else:
                        assert tag.points is not None
                        steps, walls, values = _thin(tag.points, num_points)
                    item.data.step.extend(np.asarray(steps, dtype=np.int64).tolist())
                    item.data.wall_time.extend(np.asarray(walls, dtype=np.float64).tolist())
                    item.data.value.extend(np.asarray(values, dtype=np.float64).tolist())
            return res

        return _guard(context, answer)

    def ReadTensors(self, request: pb.ReadTensorsRequest, context: grpc.ServicerContext) -> Any:
        def answer() -> pb.ReadTensorsResponse:
            view = self._view(request.experiment_id)
            num_points = request.downsample.num_points
            res = pb.ReadTensorsResponse()
            for run_name, tags in self._selected(view, request.run_tag_filter, request.plugin_filter.plugin_name):
                entry = res.runs.add(run_name=run_name)
                for t, tag in tags.items():
                    item = entry.tags.add(tag_name=t)
                    if num_points <= 0:
                        continue
                    if tag.entries is not None:
                        run_id = view.runs[run_name].record.run_id
                        for e in _thin_list(tag.entries, num_points):
                            v = self.ingester.read_value(run_id, e, tag.summary_metadata)
                            if v is not None:
                                item.data.step.append(e.step)
                                item.data.wall_time.append(e.wall_time)
                                item.data.value.add().CopyFrom(v.tensor)
                        continue
                    if tag.tensor is not None:
                        item.data.step.append(0)
                        item.data.wall_time.append(tag.tensor[1])
                        item.data.value.add().CopyFrom(_value(tag.tensor[0]).tensor)
                        continue
                    assert tag.points is not None
                    steps, walls, values = _thin(tag.points, num_points)
                    table = tag.points.plugin == "text_table"
                    for step, wall, v in zip(steps.tolist(), walls.tolist(), values, strict=True):
                        encoded = text_table_value(t, v) if table else text_value(t, v)
                        item.data.step.append(step)
                        item.data.wall_time.append(wall)
                        item.data.value.add().CopyFrom(_value(encoded).tensor)
            return res

        return _guard(context, answer)

    def ReadBlobSequences(self, request: pb.ReadBlobSequencesRequest, context: grpc.ServicerContext) -> Any:
        def answer() -> pb.ReadBlobSequencesResponse:
            view = self._view(request.experiment_id)
            num_points = request.downsample.num_points
            res = pb.ReadBlobSequencesResponse()
            for run_name, tags in self._selected(view, request.run_tag_filter, request.plugin_filter.plugin_name):
                entry = res.runs.add(run_name=run_name)
                run_id = view.runs[run_name].record.run_id
                for t, tag in tags.items():
                    item = entry.tags.add(tag_name=t)
                    if num_points > 0 and tag.entries is not None:
                        for e in _thin_list(tag.entries, num_points):
                            item.data.step.append(e.step)
                            item.data.wall_time.append(e.wall_time)
                            refs = item.data.values.add()
                            for i in range(e.blobs):
                                key = [run_id, e.file, e.offset, e.length, e.tag, i]
                                refs.blob_refs.add(blob_key=_encode_key(key))
                        continue
                    if num_points <= 0 or tag.points is None:
                        continue
                    steps, walls, names = _thin(tag.points, num_points)
                    for step, wall, file_name in zip(steps.tolist(), walls.tolist(), names, strict=True):
                        item.data.step.append(step)
                        item.data.wall_time.append(wall)
                        refs = item.data.values.add()
                        for part in range(3):
                            refs.blob_refs.add(blob_key=_blob_key(run_id, file_name, part))
            return res

        return _guard(context, answer)

    def ReadBlob(self, request: pb.ReadBlobRequest, context: grpc.ServicerContext) -> Any:
        def answer() -> list[pb.ReadBlobResponse]:
            data = self._blob(_decode_key(request.blob_key))
            pieces = range(0, max(len(data), 1), _BLOB_CHUNK)
            return [pb.ReadBlobResponse(data=data[i : i + _BLOB_CHUNK]) for i in pieces]

        yield from _guard(context, answer)

    def _blob(self, key: list[Any]) -> bytes:
        if len(key) == 6:  # a value ingested from an event file
            run_id, file_name, offset, length, tag, index = key
            _, metadata = self.ingester.index(run_id)
            entry = IndexEntry(file_name, tag, "", 0, 0, 0.0, int(offset), int(length))
            v = self.ingester.read_value(run_id, entry, metadata.get(tag))
            if v is None or int(index) >= len(v.tensor.string_val):
                raise NotFoundError("no such blob in the run's event files")
            return bytes(v.tensor.string_val[int(index)])
        run_id, file_name, part = str(key[0]), str(key[1]), int(key[2])
        data = self.store.read_file(run_id, file_name)
        if part < 2:  # width, height of the image
            height, width, _ = image_size(data)
            data = str(width if part == 0 else height).encode()
        return data

    def ingest_once(self) -> int:
        """One ingest pass over the runs requests have shown and that are not all in; returns what was added."""
        total = 0
        for run_id, ended in list(self.seen.items()):
            if run_id in self.ingested:
                continue
            try:
                n, caught_up = self.ingester.ingest_run(run_id)
            except ExpboardError as exc:
                _log.warning("ingesting the event files of run %s: %s", run_id, exc)
                continue
            total += n
            if ended and caught_up:
                self.ingested.add(run_id)
        return total

    # --- the "Runs" tab ------------------------------------------------------------------------------
    def run_table(self, request: dict[str, Any]) -> dict[str, Any]:
        """The runs of an experiment (``experiment_id`` as in TensorBoard's URL) for the Runs tab: status,
        times, tags, properties and the last value of each numeric metric. Runs whose process died show their
        final state (NotResponding, or Failed when their compute target knows: see :mod:`expboard.liveness`)."""
        try:
            reap_unresponsive(self.store)
        except ExpboardError:  # a viewer that may not write (a read token) shows the statuses as stored
            pass
        view = self._view(str(request.get("experiment_id", "")))
        rows = []
        for run in view.runs.values():
            if run.sub:
                continue  # a logs/ subfolder: part of its run's row
            r = run.record
            last = {
                i.name: float(i.last_value)
                for i in view.infos[r.run_id]
                if i.numeric and i.kind in (MetricKind.SCALAR, MetricKind.LIST)
            }
            rows.append(
                {
                    "run": run.name,
                    "run_id": r.run_id,
                    "display_name": r.display_name,
                    "experiment": r.experiment,
                    "parent_id": r.parent_id,
                    "status": r.status.value,
                    "created": r.created,
                    "start_time": r.start_time,
                    "end_time": r.end_time,
                    "tags": r.tags,
                    "properties": r.properties,
                    "metrics": {k: (v if np.isfinite(v) else str(v)) for k, v in last.items()},
                }
            )
        root = not _experiment_name(str(request.get("experiment_id", "")))
        return {
            "runs": rows,
            "experiments": [e.name for e in self.store.list_experiments()],
            # the root of a TensorBoard over everything: the newest top-level runs, child runs per experiment
            "newest_of_all": ROOT_RUNS if root and self.everything else None,
        }


class _ThinnedCache:
    """Thinned reads of numeric series, kept while their summary is unchanged: a series only grows, so the
    same point count and last point (from the metric summary every request reads anyway) mean the same
    points. TensorBoard asks for the same 1,000 points of every plotted series on each reload, and every
    viewer does; those reads then cost no store call. Least recently used first out, ``max_points`` in all."""

    def __init__(self, max_points: int = 2_000_000) -> None:
        self.max_points = max_points
        self._items: collections.OrderedDict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = (
            collections.OrderedDict()
        )
        self._points = 0
        self._lock = threading.Lock()

    @staticmethod
    def _key(info: MetricInfo, num_points: int) -> tuple[Any, ...]:
        return (info.run_id, info.name, num_points, info.count, info.last_step, info.last_wall_time)

    def get(self, info: MetricInfo, num_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        key = self._key(info, num_points)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, info: MetricInfo, num_points: int, series: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        item = (
            np.asarray(series.steps, dtype=np.int64),
            np.asarray(series.wall_times, dtype=np.float64),
            np.asarray(series.values, dtype=np.float64),
        )
        last = (int(item[0][-1]), float(item[1][-1])) if len(item[0]) else None
        if last != (info.last_step, info.last_wall_time):
            return item  # logged to since the summary was read (the last point is always kept): not kept
        key = self._key(info, num_points)
        with self._lock:
            old = self._items.pop(key, None)
            self._points -= len(old[0]) if old is not None else 0
            self._items[key] = item
            self._points += len(item[0])
            while self._points > self.max_points and self._items:
                _, dropped = self._items.popitem(last=False)
                self._points -= len(dropped[0])
        return item


def _experiment_name(experiment_id: str) -> str:
    """The expboard experiment a TensorBoard experiment id selects ("": what the root shows)."""
    return "" if experiment_id == DEFAULT_EXPERIMENT_ID else experiment_id


def _thin(points: TagPoints, num_points: int) -> tuple[np.ndarray, np.ndarray, Any]:
    """At most ``num_points`` evenly spaced points of ``points``, the first and the last kept."""
    n = len(points.steps)
    if n <= num_points:
        return points.steps, points.wall_times, points.values
    keep = np.array([n - 1]) if num_points == 1 else np.unique(np.round(np.linspace(0, n - 1, num_points)).astype(int))
    values = points.values
    values = values[keep] if isinstance(values, np.ndarray) else [values[i] for i in keep.tolist()]
    return points.steps[keep], points.wall_times[keep], values


def _thin_list(items: list[T], num_points: int) -> list[T]:
    n = len(items)
    if n <= num_points:
        return items
    if num_points == 1:
        return [items[-1]]
    return [items[i] for i in np.unique(np.round(np.linspace(0, n - 1, num_points)).astype(int)).tolist()]


def _guard(context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
    """Run an RPC, turning expboard errors into gRPC statuses TensorBoard understands."""
    try:
        return fn()
    except NotFoundError as exc:
        context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    except ValidationError as exc:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except StoreUnavailableError as exc:
        context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    except ExpboardError as exc:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    except Exception as exc:
        _log.exception("data provider request failed")
        context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
    raise AssertionError("unreachable")  # context.abort raises


class DataProviderServer:
    """The data provider served over gRPC on ``host:port`` (port 0: a free one), in threads of this process.

    >>> with DataProviderServer(store, run_ids=[run.id]) as server:   # doctest: +SKIP
    ...     print(server.address)                                      # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store,
        run_ids: Sequence[str] = (),
        experiments: Sequence[str] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hparams: Sequence[str] | None = None,
        max_workers: int = 8,
        ingest_interval: float | None = 0.2,
    ) -> None:
        self.provider = StoreDataProvider(store, run_ids, experiments, hparams=hparams)
        self.ingest_interval = ingest_interval
        self._ingest_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.host = host
        self.requested_port = port
        self.max_workers = max_workers
        self.port: int | None = None
        self._server: grpc.Server | None = None
        self._lock = threading.Lock()

    @property
    def address(self) -> str | None:
        """``host:port`` while serving (what ``tensorboard --grpc_data_provider`` takes), else None."""
        return f"{self.host}:{self.port}" if self._server is not None else None

    def start(self) -> str:
        """Serve; returns the address. A second call returns the same address."""
        with self._lock:
            if self._server is not None:
                assert self.port is not None
                return f"{self.host}:{self.port}"
            server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="expboard-provider"),
                options=[("grpc.max_send_message_length", 256 * 1024 * 1024), ("grpc.so_reuseport", 0)],
            )
            pb_grpc.add_TensorBoardDataProviderServicer_to_server(self.provider, server)
            server.add_generic_rpc_handlers((_run_table_handler(self.provider),))
            port = server.add_insecure_port(f"{self.host}:{self.requested_port or self.port or 0}")
            if not port:
                raise ExpboardError(f"cannot serve the data provider on {self.host}:{self.requested_port}")
            server.start()
            self._server, self.port = server, port
            if self.ingest_interval is not None:
                self._stop.clear()
                self._ingest_thread = threading.Thread(target=self._ingest_loop, name="expboard-ingest", daemon=True)
                self._ingest_thread.start()
            return f"{self.host}:{port}"

    def _ingest_loop(self) -> None:
        assert self.ingest_interval is not None
        while not self._stop.is_set():
            try:
                self.provider.ingest_once()
            except Exception:  # never let one bad pass end ingestion
                _log.exception("ingest pass failed")
            self._stop.wait(self.ingest_interval)

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving (idempotent). A later :meth:`start` serves on the same port again."""
        with self._lock:
            server, self._server = self._server, None
            thread, self._ingest_thread = self._ingest_thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout=30)
        if server is not None:
            server.stop(grace).wait()

    def __enter__(self) -> DataProviderServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _run_table_handler(provider: StoreDataProvider) -> grpc.GenericRpcHandler:
    def list_runs(request: dict[str, Any], context: grpc.ServicerContext) -> dict[str, Any]:
        return _guard(context, lambda: provider.run_table(request))

    service, method = RUN_TABLE_METHOD.strip("/").split("/")
    return grpc.method_handlers_generic_handler(
        service,
        {
            method: grpc.unary_unary_rpc_method_handler(
                list_runs,
                request_deserializer=lambda b: json.loads(b or b"{}"),
                response_serializer=lambda d: json.dumps(d).encode(),
            )
        },
    )
