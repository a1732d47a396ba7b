"""``Tensorboard``: a real TensorBoard process over live mirrors of runs (or over a folder as it is).

>>> tb = Tensorboard([run])                      # doctest: +SKIP
>>> tb.start()                                   # doctest: +SKIP
'http://127.0.0.1:6006/'
>>> tb.stop()                                    # doctest: +SKIP

>>> with Tensorboard([], local_root="exportedTBlogs", port=0) as tb:   # doctest: +SKIP
...     url = tb.start()

TensorBoard is started as ``python -m tensorboard.main`` with the interpreter running expboard, bound to
127.0.0.1. ``mode="provider"`` (the default without ``local_root``): TensorBoard reads the run history itself
through expboard's data provider (``--grpc_data_provider``, served from this process), nothing is copied.
``mode="files"``: runs are mirrored into ``local_root`` as event files, with ``--reload_interval 1`` so that
what the sync thread writes is shown within about a second.
"""

from __future__ import annotations

import atexit
import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from .. import state
from ..children import end_group_with_me, stop_watcher
from ..errors import ExpboardError, ValidationError
from .export import runs_of
from .provider import DataProviderServer
from .sync import LiveSync

if TYPE_CHECKING:
    from ..experiment import Experiment
    from ..run import Run

__all__ = ["PortInUseError", "Tensorboard", "TensorboardError"]

_URL_LINE = re.compile(r"TensorBoard \S+ at (http://\S+?:(\d+)/)")
_PORT_IN_USE = re.compile(r"could not bind to port (\d+), it was already in use")


class TensorboardError(ExpboardError):
    """TensorBoard could not be started (its output is in the message)."""


class PortInUseError(TensorboardError):
    """The requested port is taken; pick another one or pass ``port=0`` for a free one."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host:port`` can be bound now (the way TensorBoard's server binds, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # TensorBoard also refuses a port it can connect to
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _is_experiment(runs: Any) -> bool:
    from ..experiment import Experiment

    return isinstance(runs, Experiment)


class Tensorboard:
    """A TensorBoard over runs' ``logs/`` files and metrics, kept live while the runs are active.

    ``runs``: runs to show (their child runs too), or an Experiment (all its runs, new ones included);
    ``[]`` serves ``local_root`` as it is. ``mode``: ``"provider"`` (TensorBoard reads the store through
    expboard's data provider; the default unless ``local_root`` is given) or ``"files"`` (event files
    mirrored into ``local_root``). ``local_root``: where the runs are mirrored (default: a temporary folder,
    removed by :meth:`stop`). ``port``: 0 picks a free port. ``load_fast``: TensorBoard's loader in files
    mode ("auto": the Rust data server when installed, "false": the Python loader). ``poll_interval``:
    seconds between syncs of active runs (files mode). ``experiments``: names of experiments whose runs are
    shown too, new ones included (provider mode; ``store`` is then the store to read, e.g. ``ws.store``).
    ``grpc_data_provider``: ``host:port`` of a data provider already serving (instead of starting one).
    ``path_prefix``: TensorBoard's ``--path_prefix`` (e.g. ``/tensorboard`` behind a proxy).
    """

    def __init__(
        self,
        runs: Sequence[Run] | Run | Experiment | None = (),
        local_root: str | os.PathLike[str] | None = None,
        port: int = 6006,
        *,
        load_fast: str = "auto",
        poll_interval: float = 1.0,
        reload_interval: float = 1.0,
        startup_timeout: float = 90.0,
        extra_args: Sequence[str] = (),
        mode: str | None = None,
        experiments: Sequence[str] = (),
        store: Any = None,
        grpc_data_provider: str | None = None,
        path_prefix: str = "",
    ) -> None:
        if not 0 <= int(port) <= 0xFFFF:
            raise ValidationError(f"port must be between 0 and 65535, got {port}")
        mode = mode or ("files" if local_root is not None else "provider")
        if mode not in ("provider", "files"):
            raise ValidationError(f"mode must be 'provider' or 'files', got {mode!r}")
        self.mode = mode
        self._experiment: Any = cast(Any, runs) if _is_experiment(runs) else None
        self.experiments: list[str] = [self._experiment.name] if self._experiment is not None else []
        self.experiments += [e for e in experiments if e not in self.experiments]
        self._store = store if store is not None else (self._experiment.workspace.store if self._experiment else None)
        self.runs = runs_of(runs, "Tensorboard") if runs is not None else []
        self.provider: DataProviderServer | None = None
        self.grpc_data_provider = grpc_data_provider
        self.path_prefix = path_prefix.rstrip("/")
        self.requested_local_root = Path(local_root) if local_root is not None else None
        self.requested_port = int(port)
        self.load_fast = load_fast
        self.poll_interval = poll_interval
        self.reload_interval = reload_interval
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.local_root: Path | None = None
        self.port: int | None = None
        self.process: subprocess.Popen[str] | None = None
        self._watcher: subprocess.Popen[bytes] | None = None
        self.sync: LiveSync | None = None
        self._url: str | None = None
        self._owns_root = False
        self._output: collections.deque[str] = collections.deque(maxlen=400)
        self._reader: threading.Thread | None = None
        self._lock = threading.RLock()

    # --- public ---------------------------------------------------------------------------------
    @property
    def url(self) -> str | None:
        """``http://127.0.0.1:PORT/`` while running, else None."""
        return self._url

    @property
    def output(self) -> str:
        """The last lines TensorBoard printed."""
        return "".join(self._output)

    def start(self, start_browser: bool = False) -> str:
        """Mirror the runs, launch TensorBoard, wait until it answers HTTP and return its URL.

        A second call returns the same URL. Raises :class:`PortInUseError` for a busy port and
        :class:`TensorboardError` (with TensorBoard's output) if it exits or does not answer in time.
        """
        with self._lock:
            if self._url is not None and self.process is not None and self.process.poll() is None:
                return self._url
            if self._url is not None:  # it died since: start afresh
                self.stop()
            port = self.requested_port
            if port and not port_is_free(port):
                raise PortInUseError(
                    f"port {port} is already in use (another TensorBoard?); stop it, choose another port, "
                    "or use port 0 (`--port 0` on the command line) to pick a free one"
                )
            try:
                if self.grpc_data_provider is not None:
                    pass  # TensorBoard reads a provider that serves already
                elif self.mode == "provider" and (self.runs or self.experiments):
                    self._start_provider()
                else:
                    self._prepare_root()
                    self._start_sync()
                self._launch(port)
                url = self._wait_ready()
            except BaseException:
                self.stop()
                raise
            self._url = url
            proc = self.process
            state.serve(
                [r.id for r in self.runs],
                url,
                experiments=self.experiments,
                alive=lambda: proc is not None and proc.poll() is None,
            )
            atexit.register(self.stop)
        if start_browser:
            import webbrowser

            webbrowser.open(url)
        return url

    def stop(self) -> None:
        """Stop TensorBoard (terminate, then kill) and the sync thread; remove a temporary local root.

        Idempotent; also called on ``with`` exit and at interpreter exit.
        """
        with self._lock:
            if self._url is not None:
                state.unserve([r.id for r in self.runs], self._url, experiments=self.experiments)
            if self.sync is not None:
                self.sync.stop()
                self.sync = None
            proc, self.process = self.process, None
            if proc is not None:
                _end_process_group(proc)
            stop_watcher(self._watcher)
            self._watcher = None
            if self.provider is not None:
                self.provider.stop()
                self.provider = None
            if self._reader is not None:
                self._reader.join(timeout=5)
                self._reader = None
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()
            if self._owns_root and self.local_root is not None:
                shutil.rmtree(self.local_root, ignore_errors=True)
                self._owns_root = False
                self.local_root = None
            self._url = None
            atexit.unregister(self.stop)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def __enter__(self) -> Tensorboard:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Tensorboard(runs={len(self.runs)}, local_root={str(self.local_root)!r}, url={self._url!r})"

    # --- steps of start() -----------------------------------------------------------------------
    def _prepare_root(self) -> None:
        if self.requested_local_root is None:
            self.local_root = Path(tempfile.mkdtemp(prefix="expboard-tensorboard-"))
            self._owns_root = True
        else:
            self.local_root = self.requested_local_root.resolve()
            self.local_root.mkdir(parents=True, exist_ok=True)

    def _start_provider(self) -> None:
        store = self._store if self._store is not None else self.runs[0].store
        run_ids = [] if self._experiment is not None else [r.id for r in self.runs]  # an Experiment: all its runs
        self.provider = DataProviderServer(store, run_ids, self.experiments)
        self.provider.start()

    def _start_sync(self) -> None:
        if not self.runs:
            return
        assert self.local_root is not None
        store = self.runs[0].store
        self.sync = LiveSync(store, [r.id for r in self.runs], self.local_root, interval=self.poll_interval)
        self.sync.sync_once()  # the data is there before TensorBoard's first load
        self.sync.start()

    def _launch(self, port: int) -> None:
        if self.grpc_data_provider is not None:
            source = ["--grpc_data_provider", self.grpc_data_provider]
        elif self.provider is not None:
            assert self.provider.address is not None
            source = ["--grpc_data_provider", self.provider.address]
        else:
            assert self.local_root is not None
            source = [
                "--logdir",
                str(self.local_root),
                "--reload_interval",
                str(self.reload_interval),
                f"--load_fast={self.load_fast}",
            ]
        cmd = [sys.executable, "-m", "tensorboard.main", *source, "--host", "127.0.0.1", "--port", str(port)]
        if self.path_prefix:
            cmd += ["--path_prefix", self.path_prefix]
        cmd += self.extra_args
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._output.clear()
        self.process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,  # its own process group: stop() ends the data server child too
        )
        # this process killed (-9): TensorBoard, its data server and a temporary local root go with it
        self._watcher = end_group_with_me(self.process.pid, remove=self.local_root if self._owns_root else None)
        self._reader = threading.Thread(
            target=_read_output, args=(self.process, self._output), name="expboard-tensorboard-output", daemon=True
        )
        self._reader.start()

    def _wait_ready(self) -> str:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        port = self.requested_port or None
        while time.monotonic() < deadline:
            out = self.output
            busy = _PORT_IN_USE.search(out)
            if busy:
                raise PortInUseError(
                    f"port {busy.group(1)} is already in use (TensorBoard says: {busy.group(0)}); "
                    "choose another port, or port 0 (`--port 0`) to pick a free one"
                )
            if port is None:
                m = _URL_LINE.search(out)
                if m:
                    port = int(m.group(2))
            if self.process.poll() is not None:
                if self._reader is not None:
                    self._reader.join(timeout=5)
                raise TensorboardError(
                    f"TensorBoard exited with code {self.process.returncode} before answering; its output:\n"
                    f"{self.output.strip()}"
                )
            if port is not None and _answers(port, self.path_prefix):
                self.port = port
                return f"http://127.0.0.1:{port}{self.path_prefix}/"
            time.sleep(0.1)
        raise TensorboardError(
            f"TensorBoard did not answer within {self.startup_timeout:.0f} s; its output:\n{self.output.strip()}"
        )


def _answers(port: int, path_prefix: str = "") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path_prefix}/data/environment", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _read_output(proc: subprocess.Popen[str], sink: collections.deque[str]) -> None:
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            sink.append(line)
    except (ValueError, OSError):  # closed by stop()
        pass


def _end_process_group(proc: subprocess.Popen[str], timeout: float = 5.0) -> None:
    """Terminate TensorBoard and what it started (the Rust data server), then kill what is left."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    if pgid is not None and pgid == proc.pid:  # the group is TensorBoard's own (start_new_session)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if _group_ended(pgid, 0.0 if sig == signal.SIGTERM else 2.0):
                return
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                return
        _group_ended(pgid, 2.0)


def _group_ended(pgid: int, timeout: float) -> bool:
    """Wait until no process of the group is left (orphans included: init reaps them); True if none is."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
