"""TensorBoard reading the run history through expboard's data provider: a real ``tensorboard
--grpc_data_provider`` process, queried over its own HTTP API, with no event file on the viewer's side."""

from __future__ import annotations

import glob
import io
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tbhelpers import (
    ALPHAS,
    get_json,
    make_sweep,
    ridge_mse,
    scalars,
    session_groups,
    wait_for,
)

from expboard import Experiment, Workspace
from expboard.tensorboard import Tensorboard
from expboard.tensorboard.export import export_to_tensorboard, run_folder_name
from expboard.tensorboard.provider import DataProviderServer
from expboard.tfevents import SummaryWriter


def _query(url: str, path: str, **params: Any) -> Any:
    return get_json(f"{url}{path}?{urllib.parse.urlencode(params)}")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (7, 5), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def world(module_ws: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The how-to's Option 2 sweep, and an experiment with every kind of metric, behind one TensorBoard."""
    root_run = make_sweep(module_ws, "provider-sweep")
    kinds = Experiment(module_ws, "provider-kinds")
    run = kinds.start_logging(display_name="kinds")
    run.log_array("loss", np.linspace(1.0, 0.0, 5000))
    run.log("note", "epoch done")
    run.log_row("rows", a=1, b=2.5)
    run.log_row("rows", a=2, b=3.5)
    run.log_table("tbl", {"x": [1, 2, 3], "y": [4.0, 5.0, 6.0]})
    run.log_confusion_matrix("cm", [[1, 2], [3, 4]])
    image = tmp_path_factory.mktemp("img") / "red.png"
    image.write_bytes(_png())
    run.log_image("picture", path=str(image))
    run.flush()
    tb = Tensorboard([root_run], port=0)
    url = tb.start()
    yield {"url": url, "tb": tb, "root": root_run, "kinds": kinds, "run": run, "ws": module_ws}
    tb.stop()
    run.complete()


def test_no_event_file_on_the_viewers_side(world: dict[str, Any]) -> None:
    tb = world["tb"]
    assert tb.mode == "provider" and tb.local_root is None and tb.provider is not None
    assert "--grpc_data_provider" in " ".join(tb.process.args)


def test_sweep_shows_in_hparams_without_export(world: dict[str, Any], tmp_path: Path) -> None:
    url, root_run = world["url"], world["root"]
    expected = ridge_mse()
    groups = wait_for(lambda: (g := session_groups(url)["sessionGroups"]) and len(g) == len(ALPHAS) and g)
    by_alpha = {g["hparams"]["alpha"]: g for g in groups}
    assert sorted(by_alpha) == pytest.approx(ALPHAS)
    for alpha, group in by_alpha.items():
        (session,) = group["sessions"]
        assert session["status"] == "STATUS_SUCCESS"
        assert session["endTimeSecs"] >= session["startTimeSecs"] > 0
        (metric,) = group["metricValues"]
        assert metric["name"]["tag"] == "mse"
        assert metric["value"] == pytest.approx(expected[min(expected, key=lambda a: abs(a - alpha))], rel=1e-6)
    # exactly what export_to_tensorboard makes of the same runs, read by TensorBoard from event files
    logdir = tmp_path / "exported"
    export_to_tensorboard(root_run, logdir)
    with Tensorboard([], local_root=logdir, port=0) as files_tb:
        exported = wait_for(lambda: (g := session_groups(files_tb.start())["sessionGroups"]) and len(g) == 7 and g)

    def essence(gs: list[dict[str, Any]]) -> list[Any]:
        return sorted(
            (
                g["name"],
                g["hparams"],
                [(m["name"]["tag"], round(m["value"], 4)) for m in g["metricValues"]],
                [s["status"] for s in g["sessions"]],
                [round(s["startTimeSecs"], 3) for s in g["sessions"]],
            )
            for g in gs
        )

    assert essence(groups) == essence(exported)


def test_every_metric_kind_in_the_stock_dashboards(world: dict[str, Any]) -> None:
    url = f"{world['url']}experiment/provider-kinds/"
    run = run_folder_name(world["run"].record)
    assert get_json(f"{url}data/runs") == [run]
    tags = get_json(f"{url}data/plugin/scalars/tags")[run]
    assert set(tags) == {"loss", "rows/a", "rows/b", "tbl/x", "tbl/y"}
    loss = scalars(url, run, "loss")
    assert len(loss) == 1000  # --samples_per_plugin default, downsampled in the store
    assert loss[0][1:] == (0, 1.0) and loss[-1][1:] == (4999, 0.0)  # first and last kept
    assert [p[1:] for p in scalars(url, run, "rows/b")] == [(0, 2.5), (1, 3.5)]
    assert [p[1:] for p in scalars(url, run, "tbl/y")] == [(0, 4.0), (1, 5.0), (2, 6.0)]
    assert sorted(get_json(f"{url}data/plugin/text/tags")[run]) == ["cm", "note"]
    (note,) = _query(url, "data/plugin/text/text", run=run, tag="note")
    assert "epoch done" in note["text"]
    (cm,) = _query(url, "data/plugin/text/text", run=run, tag="cm")
    assert "<table>" in cm["text"] and "predicted" in cm["text"]
    assert get_json(f"{url}data/plugin/images/tags")[run]["picture"]["samples"] == 1
    (img,) = _query(url, "data/plugin/images/images", run=run, tag="picture")
    with urllib.request.urlopen(f"{url}data/plugin/images/individualImage?{img['query']}", timeout=10) as resp:
        assert resp.read() == _png()


def test_new_run_appears_without_restart(world: dict[str, Any]) -> None:
    url, kinds = f"{world['url']}experiment/provider-kinds/", world["kinds"]
    pid = world["tb"].pid
    with kinds.start_logging(display_name="late") as late:
        late.log("acc", 0.5)
        late.flush()
        name = run_folder_name(late.record)
        assert wait_for(lambda: [p[1:] for p in scalars(url, name, "acc")] == [(0, 0.5)])
        late.log("acc", 0.75)
        late.flush()
        assert wait_for(lambda: [p[2] for p in scalars(url, name, "acc")] == [0.5, 0.75])
    # a child started later under the root run shows at the root URL, nested like the export's folders
    with world["root"].child_run("alpha0.9") as child:
        child.log("alpha", 0.9)
        child.log("mse", 3000.0)
    nested = f"{run_folder_name(world['root'].record)}/{run_folder_name(child.record)}"
    assert wait_for(lambda: nested in get_json(f"{world['url']}data/runs"))
    assert world["tb"].pid == pid


def test_unknown_experiment_is_an_error(world: dict[str, Any]) -> None:
    assert _status(f"{world['url']}experiment/no-such-experiment/data/runs") >= 400


def test_event_files_are_ingested_live(module_ws: Workspace, tmp_path: Path) -> None:
    """Option 1: what a script writes under ./logs reaches every dashboard while the run trains."""
    run = Experiment(module_ws, "provider-option1").start_logging(display_name="train")
    writer = SummaryWriter(str(tmp_path / "logs"))
    for step in range(3):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.add_histogram("weights", np.arange(100, dtype=np.float64), 0)
    writer.add_text("notes", "first **epoch**", 0)
    writer.flush()
    (path,) = glob.glob(str(tmp_path / "logs" / "*tfevents*"))
    name = f"logs/{os.path.basename(path)}"
    sent = Path(path).read_bytes()
    module_ws.store.append_file(run.id, name, sent, 0)
    with Tensorboard([run], port=0) as tb:
        url = tb.start()
        tb_run = run_folder_name(run.record)
        assert wait_for(lambda: [p[1] for p in scalars(url, tb_run, "loss")] == [0, 1, 2])
        (hist,) = wait_for(lambda: _query(url, "data/plugin/histograms/histograms", run=tb_run, tag="weights"))
        assert hist[1] == 0 and sum(b[2] for b in hist[2]) == pytest.approx(100)
        (text,) = _query(url, "data/plugin/text/text", run=tb_run, tag="notes/text_summary")  # as torch names it
        assert "<strong>epoch</strong>" in text["text"]
        # the script goes on: appended bytes (a record split over two appends) show up without a restart
        writer.add_scalar("loss", 0.125, 3)
        writer.add_image("sample", np.full((3, 4, 6), 128, dtype=np.uint8), 3)
        writer.flush()
        more = Path(path).read_bytes()[len(sent) :]
        module_ws.store.append_file(run.id, name, more[:7], len(sent))
        module_ws.store.append_file(run.id, name, more[7:], len(sent) + 7)
        points = wait_for(lambda: (p := scalars(url, tb_run, "loss")) and len(p) == 4 and p)
        assert points[3][1:] == (3, 0.125)
        (img,) = wait_for(lambda: _query(url, "data/plugin/images/images", run=tb_run, tag="sample"))
        with urllib.request.urlopen(f"{url}data/plugin/images/individualImage?{img['query']}", timeout=10) as r:
            assert r.read()[:8] == b"\x89PNG\r\n\x1a\n"
        # a subfolder of logs/ is a run of its own, as in TensorBoard's logdir: <run>/eval, its tags its own
        with SummaryWriter(str(tmp_path / "logs" / "eval")) as evaluation:
            for step in range(2):
                evaluation.add_scalar("loss", 10.0 + step, step)
            evaluation.add_histogram("weights", np.ones(5), 1)
        (eval_path,) = glob.glob(str(tmp_path / "logs" / "eval" / "*tfevents*"))
        module_ws.store.write_file(run.id, f"logs/eval/{os.path.basename(eval_path)}", Path(eval_path).read_bytes())
        sub = f"{tb_run}/eval"
        assert wait_for(lambda: sub in get_json(f"{url}data/runs"))
        assert [p[1:] for p in scalars(url, sub, "loss")] == [(0, 10.0), (1, 11.0)]
        assert len(scalars(url, tb_run, "loss")) == 4  # the run's own loss is untouched
        assert get_json(f"{url}data/plugin/scalars/tags")[sub].keys() == {"loss"}
        (hist,) = _query(url, "data/plugin/histograms/histograms", run=sub, tag="weights")
        assert hist[1] == 1 and sum(b[2] for b in hist[2]) == pytest.approx(5)
    writer.close()
    # the scalars are run history now, once each (ingestion is by byte offset, nothing is read twice)
    metrics = run.get_metrics()
    assert metrics["loss"] == pytest.approx([1.0, 0.5, 1 / 3, 0.125]) and metrics["eval/loss"] == [10.0, 11.0]
    # the same run names as TensorBoard gives the files of the mirror (files mode)
    with Tensorboard([run], port=0, mode="files") as files_tb:
        files_url = files_tb.start()
        assert wait_for(lambda: [p[1:] for p in scalars(files_url, sub, "loss")] == [(0, 10.0), (1, 11.0)])
        assert len(scalars(files_url, tb_run, "loss")) == 4
    run.complete()


def test_stopped_provider_is_an_error_and_recovers(module_ws: Workspace) -> None:
    run = Experiment(module_ws, "provider-restart").start_logging()
    run.log("x", 1.0)
    run.flush()
    server = DataProviderServer(module_ws.store, [run.id])
    address = server.start()
    tb = Tensorboard([], port=0, extra_args=["--grpc_data_provider", address], mode="files")
    try:
        url = tb.start()
        assert wait_for(lambda: get_json(f"{url}data/runs") == [run_folder_name(run.record)])
        server.stop()
        assert wait_for(lambda: _status(f"{url}data/runs") >= 500)
        assert server.start() == address  # back on the same port
        assert wait_for(lambda: _status(f"{url}data/runs") == 200, timeout=60)
        assert get_json(f"{url}data/runs") == [run_folder_name(run.record)]
    finally:
        tb.stop()
        server.stop()
        run.complete()


def test_runs_through_a_tracking_server_on_postgresql(local_postgres: Any, tmp_path: Path) -> None:
    from expboard.server.process import ServerProcess

    with ServerProcess(local_postgres.create_database(), tmp_path / "artifacts") as server:
        ws = Workspace.init(tmp_path / "project", tracking_uri=server.url)
        try:
            root_run = make_sweep(ws, "pg-sweep")
            with Tensorboard(Experiment(ws, "pg-sweep"), port=0) as tb:
                url = tb.start()
                groups = wait_for(lambda: (g := session_groups(url)["sessionGroups"]) and len(g) == 7 and g)
                assert {g["sessions"][0]["status"] for g in groups} == {"STATUS_SUCCESS"}
                child = sorted(root_run.get_children(), key=lambda c: c.record.created)[0]
                name = f"{run_folder_name(root_run.record)}/{run_folder_name(child.record)}"
                assert [p[1:] for p in scalars(url, name, "alpha")] == [(0, pytest.approx(0.1))]
        finally:
            ws.close()


def test_run_table_method(world: dict[str, Any]) -> None:
    """The data the Runs tab shows comes from the provider's own gRPC method."""
    import grpc

    from expboard.tensorboard.provider import RUN_TABLE_METHOD

    address = world["tb"].provider.address
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            RUN_TABLE_METHOD, request_serializer=lambda d: json.dumps(d).encode(), response_deserializer=json.loads
        )
        table = call({"experiment_id": "provider-kinds"}, timeout=30)
    (row,) = [r for r in table["runs"] if r["display_name"] == "kinds"]
    assert row["status"] == "Running" and row["metrics"]["loss"] == 0.0
    assert "provider-kinds" in table["experiments"]


def test_public_names() -> None:
    from expboard.tensorboard import ingest, plugin, provider, sessions, team

    assert sorted(provider.__all__) == ["DataProviderServer", "RUN_TABLE_METHOD", "StoreDataProvider"]
    assert sorted(sessions.__all__) == [
        "SessionCandidate",
        "SessionPlan",
        "info_of_series",
        "plan_sessions",
        "session_status",
    ]
    assert sorted(ingest.__all__) == [
        "EventIngester",
        "INGEST_PREFIX",
        "IndexEntry",
        "decode_value",
        "ingest_state_name",
        "subfolder",
    ]
    assert sorted(plugin.__all__) == ["PLUGIN_NAME", "RunsPlugin"]
    assert sorted(team.__all__) == ["PREFIX", "TeamTensorboard", "server_extension"]
    for module in (ingest, plugin, provider, sessions, team):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


OPTION1_SCRIPT = """
import time
from expboard import Run, SummaryWriter
run = Run.get_context()
writer = SummaryWriter("logs/train")  # TensorBoard's layout: one subfolder per run of the logdir
step = 0
while "stop" not in run.get_tags() and step < 600:
    writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.flush()
    step += 1
    time.sleep(0.2)
writer.close()
"""


def test_option1_script_run_live(module_ws: Workspace, tmp_path: Path) -> None:
    """The how-to's Option 1: a submitted script writes ./logs; a provider TensorBoard shows it while it trains."""
    from expboard import RunStatus, ScriptRunConfig

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(OPTION1_SCRIPT)
    config = ScriptRunConfig(source_directory=str(tmp_path / "src"), script="train.py", compute_target="local")
    run = Experiment(module_ws, "provider-option1-submit").submit(config)
    try:
        with Tensorboard([run], port=0) as tb:
            url = tb.start()
            train = f"{run_folder_name(run.record)}/train"
            points = wait_for(lambda: len(p := scalars(url, train, "loss")) >= 3 and p, timeout=120)
            assert run.get_status() == RunStatus.RUNNING  # seen while the script still trains
            assert [p[1:] for p in points[:3]] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
            assert tb.local_root is None  # nothing mirrored: TensorBoard reads the run history
    finally:
        run.tag("stop", "1")
        run.wait_for_completion(timeout=120)
    assert run.get_status() == RunStatus.COMPLETED


def test_a_1000_child_sweep_in_runs_and_hparams(module_ws: Workspace) -> None:
    """A 1,000-run experiment: every run listed and every child an HParams session, with no export call."""
    root_run = Experiment(module_ws, "provider-1000").start_logging(display_name="sweep")
    for i in range(1000):
        child = root_run.child_run(f"alpha{i / 1000}")  # a hyperparameter named in the run name, as in the how-to
        child.log("alpha", i / 1000)
        child.log("mse", 1.0 - i / 1000)
        child.complete()
    root_run.complete()
    with Tensorboard(Experiment(module_ws, "provider-1000"), port=0) as tb:
        url = tb.start()
        runs = get_json(f"{url}data/runs", timeout=60)
        assert len(runs) == 1002 and "." in runs  # the root run, its 1,000 children, the HParams experiment
        groups = session_groups(url)
        assert groups["totalSize"] == 1000 and len(groups["sessionGroups"]) == 100  # one page of them
        group = groups["sessionGroups"][0]
        assert group["metricValues"][0]["value"] == pytest.approx(1.0 - group["hparams"]["alpha"])
