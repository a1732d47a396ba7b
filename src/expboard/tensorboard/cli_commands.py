"""CLI commands ``expboard export`` and ``expboard tensorboard`` (registered through ``cli._EXTENSIONS``).

expboard export RUN_ID --logdir exportedTBlogs [--hparams alpha]
expboard export --experiment export-to-tensorboard --logdir exportedTBlogs
expboard tensorboard RUN_ID [RUN_ID ...] [--port 6006]      # live, until Ctrl-C (TensorBoard reads the store)
expboard tensorboard --experiment NAME --mode files          # event files mirrored into a folder instead
expboard tensorboard --logdir exportedTBlogs                # a folder as it is
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from ..errors import ValidationError

if TYPE_CHECKING:
    from ..run import Run

__all__ = ["register"]


def _selected_runs(run_ids: list[str], experiment: str | None) -> list[Run]:
    from ..experiment import Experiment
    from ..run import Run
    from ..workspace import Workspace

    ws = Workspace.from_config()
    runs = [Run.get(ws, run_id) for run_id in run_ids]
    if experiment:
        ws.store.get_experiment(experiment)  # NotFoundError for a typo instead of an empty experiment
        runs += list(Run.list(Experiment.get(ws, experiment)))
    return runs


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_to_tensorboard

    if bool(args.run_id) == bool(args.experiment):
        raise ValidationError("give a RUN_ID or --experiment NAME (one of them)")
    runs = _selected_runs([args.run_id] if args.run_id else [], args.experiment)
    if not runs:
        print(f"experiment {args.experiment!r} has no runs; nothing exported")
        return 0
    hparams = None if args.hparams is None else [h.strip() for h in args.hparams.split(",") if h.strip()]
    result = export_to_tensorboard(runs, args.logdir, recursive=not args.no_recursive, hparams=hparams)
    sessions = f", {result.sessions} HParams sessions" if result.sessions else ""
    print(f"Exported {len(result.run_dirs)} runs ({result.points} points{sessions}) to {result.logdir}")
    print(f"View them with: expboard tensorboard --logdir {result.logdir}")
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    from .launcher import Tensorboard

    runs: list[Run] = []
    mode = args.mode or ("files" if args.logdir else "provider")
    store: Any = None
    experiments: list[str] = []
    if args.run_ids or args.experiment:
        if mode == "provider":  # the provider lists the experiment's runs on every request: new ones appear
            from ..run import Run
            from ..workspace import Workspace

            ws = Workspace.from_config()
            runs = [Run.get(ws, run_id) for run_id in args.run_ids]
            if args.experiment:
                ws.store.get_experiment(args.experiment)  # NotFoundError for a typo
                store, experiments = ws.store, [args.experiment]
        else:
            runs = _selected_runs(args.run_ids, args.experiment)
            if not runs:
                raise ValidationError(f"experiment {args.experiment!r} has no runs")
    elif not args.logdir:
        raise ValidationError("give RUN_IDs, --experiment NAME, or --logdir DIR (a folder to serve as it is)")
    tb = Tensorboard(
        runs,
        local_root=args.logdir,
        port=args.port,
        load_fast=args.load_fast,
        mode=mode,
        experiments=experiments,
        store=store,
    )

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        url = tb.start(start_browser=args.browser)
        source = f"logdir {tb.local_root}" if tb.provider is None else f"run history via {tb.provider.address}"
        print(f"TensorBoard at {url} ({source}); press Ctrl-C to stop", flush=True)
        while tb.process is not None and tb.process.poll() is None:
            time.sleep(0.5)
        print(f"TensorBoard exited unexpectedly:\n{tb.output.strip()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Stopping TensorBoard", flush=True)
        return 0
    finally:
        tb.stop()
        signal.signal(signal.SIGTERM, previous)


def register(sub: Any, runs_sub: Any) -> None:
    """Add ``export`` and ``tensorboard`` to the ``expboard`` parser."""
    p = sub.add_parser(
        "export",
        help="export run history (metrics) as TensorBoard event files",
        description="One folder per run, child runs nested and written as HParams sessions.",
    )
    p.add_argument("run_id", nargs="?", help="the run to export (with its child runs)")
    p.add_argument("--experiment", "-e", help="export every top-level run of this experiment")
    p.add_argument("--logdir", required=True, help="output folder (re-exporting replaces what was exported)")
    p.add_argument(
        "--hparams",
        metavar="A,B",
        help="single-valued metrics that are hyperparameters (default: those named in the child runs' names, "
        "like alpha in 'alpha0.1'; '' for none)",
    )
    p.add_argument("--no-recursive", action="store_true", help="leave child runs out")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "tensorboard",
        help="launch TensorBoard on runs (live) or on a folder",
        description="Serve the runs (and their child runs) with TensorBoard on 127.0.0.1 until Ctrl-C. By default "
        "TensorBoard reads the run history itself through expboard's data provider (new runs of --experiment "
        "appear without a restart); --mode files mirrors logs/ files and metrics into --logdir (default: a "
        "temporary folder) instead. Without runs, serve --logdir as it is.",
    )
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    p.add_argument("--experiment", "-e", help="every top-level run of this experiment")
    p.add_argument("--logdir", help="folder to mirror into (files mode), or to serve as it is when no runs are given")
    p.add_argument(
        "--mode",
        choices=["provider", "files"],
        help="provider: TensorBoard reads the store (default without --logdir); files: mirror event files",
    )
    p.add_argument("--port", type=int, default=6006, help="port on 127.0.0.1 (0: a free one; default 6006)")
    p.add_argument("--load-fast", default="auto", choices=["auto", "true", "false"], help="TensorBoard's loader")
    p.add_argument("--browser", action="store_true", help="open the URL in a web browser")
    p.set_defaults(func=cmd_tensorboard)
    _add_server_flag(sub)


def _add_server_flag(sub: Any) -> None:
    """``expboard server --tensorboard``: the team TensorBoard, plugged into the server by its registry."""
    server = sub.choices.get("server")
    if server is None:
        return
    server.add_argument(
        "--tensorboard",
        action="store_true",
        help="also serve a TensorBoard over the whole run history at /tensorboard/ (same tokens as the API)",
    )
    from ..server.serve import APP_EXTENSIONS

    if _team_extension not in APP_EXTENSIONS:
        APP_EXTENSIONS.append(_team_extension)


def _team_extension(args: argparse.Namespace) -> Any:
    """The team TensorBoard's server extension, imported only when the server starts (not for ``--help``)."""
    from .team import server_extension

    return server_extension(args)
