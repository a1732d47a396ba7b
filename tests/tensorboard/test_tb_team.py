"""``expboard server --tensorboard``: a team TensorBoard behind the tracking server's tokens."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tbhelpers import wait_for

from expboard import Experiment, Workspace
from expboard.tensorboard.export import run_folder_name

TOKEN = "team-token-0123456789abcdef"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("team")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPBOARD_")}
    env.update(EXPBOARD_SERVER_TOKENS=TOKEN, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "expboard", "server", "--backend-store-uri", f"sqlite:///{root / 'db.sqlite'}",
           "--artifacts-root", str(root / "artifacts"), "--port", "0", "--tensorboard"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("expboard server listening on "):
                break
        else:
            raise AssertionError("server did not start:\n" + "".join(lines))
        (team,) = [line for line in lines if line.startswith("team TensorBoard at /tensorboard/")]
        tb_pid = int(team.rsplit("pid ", 1)[1].rstrip(")\n"))
        yield line.split()[4]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        proc.stdout.close()
    assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the SIGTERM it handled
    with pytest.raises(ProcessLookupError):  # the team TensorBoard ended with the server
        os.kill(tb_pid, 0)


def test_team_tensorboard_behind_the_api_tokens(
    team_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPBOARD_TOKEN", TOKEN)
    ws = Workspace.init(tmp_path / "project", tracking_uri=team_server)
    try:
        run = Experiment(ws, "team-exp").start_logging(display_name="shared")
        for step in range(3):
            run.log("loss", 1.0 / (step + 1), step=step)
        run.flush()
        base = f"{team_server}/tensorboard/experiment/team-exp/"
        assert _get(f"{base}data/runs")[0] == 401  # no token: nothing
        assert _get(f"{base}data/runs", {"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        name = run_folder_name(run.record)
        assert wait_for(lambda: json.loads(_get(f"{base}data/runs", bearer)[2] or b"[]") == [name])
        status, _, body = _get(f"{base}data/plugin/scalars/scalars?run={name}&tag=loss", bearer)
        assert status == 200 and [p[1:] for p in json.loads(body)] == [[0, 1.0], [1, 0.5], [2, pytest.approx(1 / 3)]]
        # the root (no experiment in the URL): the newest runs of every experiment, as <experiment>/<run>
        root = f"{team_server}/tensorboard/"
        assert f"team-exp/{name}" in json.loads(_get(f"{root}experiment/defaultExperimentId/data/runs", bearer)[2])
        status, _, body = _get(f"{root}data/plugin/scalars/scalars?run=team-exp/{name}&tag=loss", bearer)
        assert status == 200 and len(json.loads(body)) == 3
        table = json.loads(_get(f"{root}data/plugin/expboard_runs/runs", bearer)[2])
        assert table["newest_of_all"] == 100 and "team-exp" in table["experiments"]
        assert [r["run"] for r in table["runs"] if r["run_id"] == run.id] == [f"team-exp/{name}"]
        # a browser: ?token= once, then the cookie
        status, headers, _ = _get(f"{team_server}/tensorboard/?token={TOKEN}")
        assert status == 303 and headers["location"] == "/tensorboard/"
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"]
        status, _, page = _get(f"{team_server}/tensorboard/", {"Cookie": cookie})
        assert status == 200 and b"<tf-tensorboard" in page or b"tensorboard" in page.lower()
        assert _get(f"{base}data/runs", {"Cookie": cookie})[0] == 200
        status, _, body = _get(f"{base}data/plugin/expboard_runs/runs", {"Cookie": cookie})
        assert status == 200 and json.loads(body)["runs"][0]["metrics"]["loss"] == pytest.approx(1 / 3)
        # the API itself is unchanged
        assert _get(f"{team_server}/api/v1/experiments")[0] == 401
        assert _get(f"{team_server}/api/v1/experiments", bearer)[0] == 200
        run.complete()
    finally:
        ws.close()
