"""The run agent: supervises one submitted script run from Queued to its final status.

    python -m expboard.compute RUN_ID

It needs only the run id and the workspace's environment (``Workspace.env()``), so every compute target
starts the same agent: the local target as a detached subprocess, a Ray target as a Ray job's entrypoint.

    Queued ──> Starting ──> Running ──> Finalizing ──> Completed | Failed | Canceled
      │            (snapshot unpacked,      (./logs and the driver log
      │             script started)          synced, ./outputs uploaded)
      └── run.cancel() while Queued ───────────────────> Canceled

What it does:

- claims the run (a compare-and-set Queued -> Starting, so two agents never run one run), unpacks
  ``snapshot.zip`` into a fresh temporary folder and reads ``runconfig.json``;
- makes the run's environment (``environment_definition`` in runconfig.json, see :mod:`.environment`): a
  cached virtual environment built (or found built) on this machine, streaming the build into the driver
  log, or the interpreter as it is (user-managed), or the pip environment Ray activated for the job;
- starts ``python -u <script> <arguments>`` (or the run's ``command``) there, with the environment's
  interpreter, in its own process group (session), with
  ``EXPBOARD_RUN_ID``, the workspace's variables and ``PYTHONUNBUFFERED=1`` in its environment, so that
  ``Run.get_context()`` in the script returns the submitted run;
- appends the script's stdout and stderr to ``system_logs/driver.log`` about every second, whole lines of each;
- uploads ``./logs`` while it grows: appended bytes only, a replaced or truncated file again as a whole;
- writes its heartbeat every ``EXPBOARD_HEARTBEAT_S`` seconds; :func:`reap_unresponsive` turns a run whose
  heartbeat is older than ``EXPBOARD_HEARTBEAT_TIMEOUT_S`` into NotResponding (its agent died silently);
- on CancelRequested (or SIGTERM/SIGINT to the agent) sends SIGTERM to the script's process group, SIGKILL
  after ``EXPBOARD_CANCEL_GRACE_S``, and ends Canceled; when the script exits, whatever it left running in
  its process group is killed too; on Linux the script also dies with the agent (``PR_SET_PDEATHSIG``), and a
  watcher process (``sh``, in a session of its own) kills the script's process group once the agent is gone,
  however it ended (SIGKILL, its Ray node lost);
- cancels the script the same way when it runs longer than ``max_run_duration_seconds`` (the run ends
  Canceled with error code ``MaxRunDurationExceeded``);
- at the end uploads ``./outputs``, records the exit code and the tail of stderr in the run's error when
  the script failed, and removes the working copy.

Settings it reads (environment variable, setting name; defaults and units in the README's settings table):
``EXPBOARD_HEARTBEAT_S`` (heartbeat_s), ``EXPBOARD_LOG_SYNC_S`` (log_sync_s), ``EXPBOARD_CANCEL_GRACE_S``
(cancel_grace_s) and ``EXPBOARD_KEEP_WORKDIR`` (keep_workdir). The reaper reads ``EXPBOARD_HEARTBEAT_TIMEOUT_S``
in the process that calls it; ``submit()`` checks ``EXPBOARD_SNAPSHOT_MAX_MB`` (see .snapshot).
"""

from __future__ import annotations

import codecs
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from .. import settings
from ..children import death_signal_preexec, end_group_with_me, stop_watcher
from ..errors import ExpboardError
from ..liveness import ACTIVE_STATUSES, reap_unresponsive
from ..records import TERMINAL_STATUSES, RunRecord, RunStatus
from ..stores import Store
from ..transfer import DRIVER_LOG, FolderUpload
from ..workspace import Workspace
from .environment import EnvironmentBuildError, PreparedEnvironment, prepare_environment
from .snapshot import SNAPSHOT_FILE, extract_snapshot

__all__ = [
    "ACTIVE_STATUSES",
    "DRIVER_LOG",
    "RUNCONFIG_FILE",
    "SETTINGS",
    "Agent",
    "agent_command",
    "main",
    "reap_unresponsive",
]

AGENT_LOG = "system_logs/agent.log"
RUNCONFIG_FILE = "runconfig.json"
ENV_AGENT_LOG = settings.env("agent_log")  # the agent's own stdout/stderr (removed if empty)

_NOT_TERMINAL = [s for s in RunStatus if s not in TERMINAL_STATUSES]


# The rows of the settings table the agent reads.
SETTINGS = tuple(settings.by_name(n) for n in ("heartbeat_s", "log_sync_s", "cancel_grace_s", "keep_workdir"))


def agent_command(run_id: str, python: str | None = None) -> list[str]:
    """The command line that supervises ``run_id`` (every target runs this)."""
    return [python or sys.executable, "-m", "expboard.compute", run_id]


class _Output:
    """The script's stdout and stderr, gathered by reader threads, taken by the uploader. Each stream's
    bytes join the log a whole line at a time (up to ``\n`` or ``\r``), so that the two streams' lines never
    cut into each other (an unbuffered ``print`` writes its parts one by one); a partial line goes in as it
    is once it has waited ``PARTIAL_AFTER_S`` (a prompt) or its stream has ended."""

    TAIL = 8192
    PARTIAL_AFTER_S = 1.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending = bytearray()
        self.stderr_tail = bytearray()
        self.partial = {False: bytearray(), True: bytearray()}
        self.partial_since: dict[bool, float] = {}

    def feed(self, data: bytes, is_stderr: bool) -> None:
        with self.lock:
            if is_stderr:
                self.stderr_tail += data
                del self.stderr_tail[: -self.TAIL]
            part = self.partial[is_stderr]
            last = max(data.rfind(b"\n"), data.rfind(b"\r"))  # in the new bytes only: a long line costs once
            part += data
            cut = len(part) - len(data) + last + 1 if last >= 0 else 0
            if cut:
                self.pending += part[:cut]
                del part[:cut]
                self.partial_since.pop(is_stderr, None)
            if part:
                self.partial_since.setdefault(is_stderr, time.monotonic())

    def end(self, is_stderr: bool) -> None:
        """The stream has ended: its last partial line goes in."""
        with self.lock:
            self._flush_partial(is_stderr)

    def take(self) -> bytes:
        with self.lock:
            now = time.monotonic()
            for is_stderr, since in list(self.partial_since.items()):
                if now - since >= self.PARTIAL_AFTER_S:
                    self._flush_partial(is_stderr)
            data = bytes(self.pending)
            self.pending.clear()
            return data

    def _flush_partial(self, is_stderr: bool) -> None:
        self.pending += self.partial[is_stderr]
        self.partial[is_stderr].clear()
        self.partial_since.pop(is_stderr, None)

    def reader(self, stream: Any, is_stderr: bool) -> threading.Thread:
        def loop() -> None:
            fd = stream.fileno()
            try:
                while True:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    self.feed(data, is_stderr)
            except OSError:
                pass
            finally:
                self.end(is_stderr)
                stream.close()

        t = threading.Thread(target=loop, name="expboard-agent-" + ("stderr" if is_stderr else "stdout"), daemon=True)
        t.start()
        return t


def _stderr_summary(tail: bytes, max_lines: int = 20) -> str:
    text = codecs.decode(tail, "utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-max_lines:])


class Agent:
    """Supervises one run. ``Agent(store, run_id, workspace_env).run()`` returns the final status."""

    def __init__(self, store: Store, run_id: str, workspace_env: dict[str, str]) -> None:
        self.store = store
        self.run_id = run_id
        self.workspace_env = workspace_env
        self.phase = RunStatus.STARTING
        self.heartbeat_s: float = settings.get("heartbeat_s")
        self.sync_s: float = settings.get("log_sync_s")
        self.grace_s: float = settings.get("cancel_grace_s")
        self.cancel = threading.Event()
        self.cancel_reason = "canceled by request"
        self._stop = threading.Event()
        self._log_offset = 0
        self._agent_log_offset = 0
        self.output = _Output()
        self.proc: subprocess.Popen[bytes] | None = None
        self.group_watcher: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        self.duration_exceeded: str | None = None  # why the run was canceled for running too long
        self._flush_lock = threading.Lock()
        self._pidfd: int | None = None  # the script's pidfd (Linux): readable once it has exited

    # --- small helpers ----------------------------------------------------------------------------
    def note(self, message: str) -> None:
        """A line in ``system_logs/agent.log`` (what the agent did, for the curious)."""
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n".encode()
        try:
            info = self.store.append_file(self.run_id, AGENT_LOG, line, self._agent_log_offset)
            self._agent_log_offset = info.size
        except ExpboardError:
            pass

    def _update(self, only_if: list[RunStatus], **fields: Any) -> RunRecord:
        return self.store.update_run(self.run_id, heartbeat=time.time(), only_if_status=only_if, **fields)

    def _flush_driver_log(self) -> None:
        with self._flush_lock:
            data = self.output.take()
            if data:
                info = self.store.append_file(self.run_id, DRIVER_LOG, data, self._log_offset)
                self._log_offset = info.size

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                rec = self._update([*ACTIVE_STATUSES])
                if rec.status == RunStatus.CANCEL_REQUESTED or rec.status.is_terminal:
                    self.cancel.set()  # canceled, or ended by someone else (canceled while NotResponding)
                elif rec.status == RunStatus.NOT_RESPONDING:  # we were only slow: take the run back
                    self._update([RunStatus.NOT_RESPONDING], status=self.phase, error=None)
            except Exception as exc:  # the store is briefly unavailable: try again next beat
                print(f"expboard agent: heartbeat failed: {exc}", file=sys.stderr)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.cancel_reason = f"the run's agent received {signal.Signals(signum).name}"
        self.cancel.set()

    # --- the life of a run --------------------------------------------------------------------------
    def run(self) -> RunStatus:
        rec = self._update([RunStatus.QUEUED], status=RunStatus.STARTING)
        if rec.status != RunStatus.STARTING:
            if rec.status == RunStatus.CANCEL_REQUESTED:
                return self._finish(RunStatus.CANCELED, None)
            return rec.status  # canceled while queued, or claimed by another agent: nothing to do
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        beat = threading.Thread(target=self._heartbeat_loop, name="expboard-heartbeat", daemon=True)
        beat.start()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"expboard-run-{self.run_id[-8:]}-"))
        self.note(f"agent pid {os.getpid()} on {os.uname().nodename}; working copy {self.workdir}")
        try:
            try:
                config = json.loads(self.store.read_file(self.run_id, RUNCONFIG_FILE))
                n = extract_snapshot(self.store.read_file(self.run_id, SNAPSHOT_FILE), self.workdir)
                self.note(f"unpacked {n} files of the snapshot")
                (self.workdir / "logs").mkdir(exist_ok=True)
                (self.workdir / "outputs").mkdir(exist_ok=True)
                prepared = self._prepare_environment(config)
                self._start_script(config, prepared)
            except EnvironmentBuildError as exc:
                if self.cancel.is_set():
                    return self._finish(RunStatus.CANCELED, None)
                self.note(f"the run's environment could not be made: {exc}")
                self.output.feed(f"[expboard] {exc}\n".encode(), True)
                return self._finish(
                    RunStatus.FAILED,
                    {"code": "EnvironmentBuildError", "message": f"the run's environment could not be made: {exc}"},
                )
            except Exception as exc:
                self.note("could not start the script:\n" + traceback.format_exc())
                return self._finish(
                    RunStatus.FAILED, {"code": "StartError", "message": f"could not start the script: {exc}"}
                )
            return self._supervise(config)
        finally:
            self._stop.set()
            beat.join(timeout=5)
            import shutil

            if not settings.get("keep_workdir"):
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _prepare_environment(self, config: dict[str, Any]) -> PreparedEnvironment:
        """The interpreter the script runs with: the run's environment built (or found built) on this
        machine, or, where the compute target made the environment itself (Ray's runtime_env), this one."""
        definition = config.get("environment_definition")
        python = (definition or {}).get("python") or {}
        if config.get("environment_build") == "runtime_env" and not python.get("userManagedDependencies"):
            # Ray activated the job's pip environment (VIRTUAL_ENV, PATH) before starting this agent, whose
            # interpreter may be given by its full path: the script runs in that environment.
            venv = os.environ.get("VIRTUAL_ENV")
            if venv and (Path(venv) / "bin" / "python").exists():
                return PreparedEnvironment(str(Path(venv) / "bin" / "python"), str(Path(venv) / "bin"))
            return PreparedEnvironment(sys.executable, str(Path(sys.executable).parent))
        last_flush = [time.monotonic()]

        def log(data: bytes) -> None:
            self.output.feed(data, False)
            if time.monotonic() - last_flush[0] >= self.sync_s:
                last_flush[0] = time.monotonic()
                try:
                    self._flush_driver_log()
                except ExpboardError:
                    pass

        try:
            prepared = prepare_environment(definition, log, self.cancel.is_set)
        finally:
            try:
                self._flush_driver_log()
            except ExpboardError:
                pass
        if prepared.built:
            self.note(f"environment {(definition or {}).get('name')!r}: {prepared.python}")
        return prepared

    def _start_script(self, config: dict[str, Any], prepared: PreparedEnvironment | None = None) -> None:
        assert self.workdir is not None
        python = prepared.python if prepared is not None else sys.executable
        command = config.get("command")
        if isinstance(command, str):
            argv = ["bash", "-c", command]
        elif isinstance(command, list) and command:
            argv = [str(c) for c in command]
            if argv[0] in ("python", "python3"):
                argv[0] = python
        else:
            script = str(config["script"])
            script_path = (self.workdir / script).resolve()
            if not script_path.is_relative_to(self.workdir.resolve()) or not script_path.is_file():
                raise FileNotFoundError(f"no script {script!r} in the snapshot of the source directory")
            if script_path.suffix == ".py":
                argv = [python, "-u", str(script_path)]
            elif script_path.suffix == ".sh":
                argv = ["bash", str(script_path)]
            else:
                argv = [str(script_path)]
            argv += [str(a) for a in config.get("arguments", [])]
        env = dict(os.environ)
        env.pop(ENV_AGENT_LOG, None)
        if prepared is not None:
            if prepared.built:  # nothing of the agent's interpreter but expboard and what it needs
                env.pop("PYTHONPATH", None)
                env.pop("PYTHONHOME", None)
                env["VIRTUAL_ENV"] = str(Path(prepared.python).parent.parent)
            env["PATH"] = prepared.bin_dir + os.pathsep + env.get("PATH", os.defpath)
        env.update(config.get("environment") or {})
        env.update(self.workspace_env)
        env[settings.env("run_id")] = self.run_id
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: cancel reaches its children too
            preexec_fn=death_signal_preexec(),
        )
        try:
            self._pidfd = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):  # not Linux, or a kernel before 5.3: the supervisor ticks instead
            self._pidfd = None
        self.note(f"started {' '.join(argv)} (pid {self.proc.pid})")
        # the agent killed (-9, or with its Ray node): the script's group goes too
        self.group_watcher = end_group_with_me(self.proc.pid)
        try:
            self.store.add_properties(self.run_id, {"expboard.script_pid": str(self.proc.pid)})
        except ExpboardError:
            pass

    def _exited(self) -> bool:
        """Whether the script has exited, without reaping it (its pid, and so its process group id, stays
        ours until we have killed what is left in the group)."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except (AttributeError, ChildProcessError):
            return self.proc.poll() is not None

    def _sleep_unless_exited(self, timeout: float) -> None:
        """Sleep ``timeout`` seconds, or less when the script exits first (its pidfd, on Linux, turns readable
        then: a short script's end is seen at once, not at the next tick)."""
        if self._pidfd is None:
            time.sleep(timeout)
        else:
            select.select([self._pidfd], [], [], timeout)

    def _killpg(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _supervise(self, config: dict[str, Any]) -> RunStatus:
        assert self.proc is not None and self.workdir is not None
        readers = [self.output.reader(self.proc.stdout, False), self.output.reader(self.proc.stderr, True)]
        logs = FolderUpload(self.store, self.run_id, self.workdir / "logs", "logs")
        rec = self._update([RunStatus.STARTING], status=RunStatus.RUNNING, start_time=time.time())
        if rec.status == RunStatus.RUNNING:
            self.phase = RunStatus.RUNNING
        elif rec.status == RunStatus.CANCEL_REQUESTED:
            self.cancel.set()
        term_sent: float | None = None
        killed = False
        next_sync = 0.0
        started = time.monotonic()
        max_duration = config.get("max_run_duration_seconds")
        while not self._exited():
            now = time.monotonic()
            if max_duration is not None and not self.cancel.is_set() and now - started > float(max_duration):
                self.duration_exceeded = (
                    f"the run ran longer than its max_run_duration_seconds ({float(max_duration):g} s) and was canceled"
                )
                self.cancel_reason = self.duration_exceeded
                self.cancel.set()
            if self.cancel.is_set() and term_sent is None:
                self.note(f"{self.cancel_reason}: SIGTERM to the script's process group")
                self._killpg(signal.SIGTERM)
                term_sent = now
            elif term_sent is not None and not killed and now - term_sent > self.grace_s:
                self.note(f"the script did not end within {self.grace_s:g} s of SIGTERM: SIGKILL")
                self._killpg(signal.SIGKILL)
                killed = True
            if now >= next_sync:
                next_sync = now + self.sync_s
                self._sync(logs)
                if not self.cancel.is_set() and self.store.get_run(self.run_id).status == RunStatus.CANCEL_REQUESTED:
                    self.cancel.set()
            self._sleep_unless_exited(0.05 if self.cancel.is_set() else min(0.2, self.sync_s))
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._killpg(signal.SIGKILL)  # whatever the script left behind in its group
        stop_watcher(self.group_watcher)  # before the wait: once reaped, the group's id may be reused
        self.group_watcher = None
        returncode = self.proc.wait()
        for t in readers:
            t.join(timeout=5)
        self.phase = RunStatus.FINALIZING
        self._update([RunStatus.RUNNING, RunStatus.STARTING], status=RunStatus.FINALIZING)
        error: dict[str, Any] | None = None
        script = str(config.get("script") or "the command")
        try:
            self._sync(logs)
            outputs = FolderUpload(self.store, self.run_id, self.workdir / "outputs", "outputs").upload_all()
            if outputs:
                self.note(f"uploaded {len(outputs)} files of ./outputs")
        except Exception as exc:
            self.note("uploading the run's files failed:\n" + traceback.format_exc())
            error = {"code": "UploadError", "message": f"uploading ./logs or ./outputs failed: {exc}"}
        self.note(f"the script exited with code {returncode}")
        if term_sent is not None:
            if self.duration_exceeded is not None:
                return self._finish(
                    RunStatus.CANCELED,
                    {"code": "MaxRunDurationExceeded", "message": self.duration_exceeded},
                )
            return self._finish(RunStatus.CANCELED, None)
        if returncode != 0:
            return self._finish(RunStatus.FAILED, self._exit_error(script, returncode))
        if error is not None:
            return self._finish(RunStatus.FAILED, error)
        return self._finish(RunStatus.COMPLETED, None)

    def _sync(self, logs: FolderUpload) -> None:
        try:
            self._flush_driver_log()
            logs.sync()
        except Exception as exc:  # the store is briefly unavailable, a file vanished: next round
            print(f"expboard agent: upload failed, will retry: {exc}", file=sys.stderr)

    def _exit_error(self, script: str, returncode: int) -> dict[str, Any]:
        tail = _stderr_summary(bytes(self.output.stderr_tail))
        if returncode < 0:
            name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else "?"
            what = f"{script} was killed by signal {name} ({-returncode})"
            if -returncode == signal.SIGKILL:
                what += "; out of memory, or killed from outside"
        else:
            what = f"{script} exited with code {returncode}"
        message = what + (f"; the end of its stderr:\n{tail}" if tail else " (nothing on stderr)")
        return {"code": "ScriptFailed", "message": message, "exitCode": returncode, "stderrTail": tail}

    def _finish(self, status: RunStatus, error: dict[str, Any] | None) -> RunStatus:
        try:
            self._flush_driver_log()
        except ExpboardError:
            pass
        now = time.time()
        fields: dict[str, Any] = {"status": status, "end_time": now}
        if error is not None:
            fields["error"] = error
        rec = self._update(_NOT_TERMINAL, **fields)
        self.note(f"run ended {rec.status.value}")
        return rec.status


def _open_store() -> tuple[Store, dict[str, str]]:
    folder = settings.get("workspace")
    ws = Workspace(folder) if folder and os.path.isdir(folder) else Workspace()
    return ws.store, ws.env()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m expboard.compute RUN_ID", file=sys.stderr)
        return 2
    run_id = args[0]
    store, env = _open_store()
    agent = Agent(store, run_id, env)
    try:
        try:
            store.add_properties(run_id, {"expboard.agent_pid": str(os.getpid())})
        except ExpboardError:
            pass
        status = agent.run()
    except BaseException as exc:
        if agent.proc is not None and agent.proc.returncode is None:
            agent._killpg(signal.SIGKILL)
        try:
            agent.note("the agent failed:\n" + traceback.format_exc())
            store.update_run(
                run_id,
                status=RunStatus.FAILED,
                end_time=time.time(),
                error={"code": "AgentError", "message": f"the run's agent failed: {exc!r}"},
                only_if_status=_NOT_TERMINAL,
            )
        finally:
            store.close()
        raise
    store.close()
    own_log = settings.get("agent_log")
    if own_log:
        try:
            if os.path.getsize(own_log) == 0:
                os.unlink(own_log)
        except OSError:
            pass
    return 0 if status in (RunStatus.COMPLETED, RunStatus.CANCELED) else 1
