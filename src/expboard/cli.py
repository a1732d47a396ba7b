"""The ``expboard`` command: thin over the library. Each subcommand is one function ``cmd_<name>``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from .compute.cli_commands import register as register_compute_commands
from .errors import ExpboardError
from .model_commands import register as register_model_commands
from .records import RunRecord
from .server.serve import register as register_server_commands
from .tensorboard.cli_commands import register as register_tensorboard_commands
from .workspace import Workspace

__all__ = ["main"]

Command = Callable[[argparse.Namespace], int]


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def cmd_init(args: argparse.Namespace) -> int:
    ws = Workspace.init(args.path, tracking_uri=args.tracking_uri)
    print(f"Initialized expboard workspace in {ws.path}/.expboard (tracking URI {ws.tracking_uri})")
    ws.close()
    return 0


def cmd_runs_list(args: argparse.Namespace) -> int:
    from .liveness import reap_unresponsive
    from .stores import UNSET
    from .stores.query import RunFilter

    ws = Workspace.from_config()
    reap_unresponsive(ws.store)  # a run whose process died shows NotResponding, not Running
    run_filter = RunFilter.parse(
        status=args.status, tags=args.tag, properties=args.property, metrics=args.metric, text=args.search
    )
    page = ws.store.query_runs(
        experiment=args.experiment,
        parent_id=UNSET if args.all else None,
        filter=run_filter,
        limit=args.limit,
        page_token=args.page_token,
    )
    records = page.runs
    if args.json:
        # compact: pretty-printing a long list cost most of the command's time
        sys.stdout.write(json.dumps([_record_json(r) for r in records], separators=(",", ":")) + "\n")
        if page.next_page_token:
            print(f"next page: --page-token {page.next_page_token}", file=sys.stderr)
        return 0
    if not records:
        print("no runs" + (f" in experiment {args.experiment!r}" if args.experiment else ""))
        return 0
    rows = [("RUN ID", "EXPERIMENT", "NAME", "STATUS", "STARTED")]
    rows += [(r.run_id, r.experiment, r.display_name, r.status.value, _when(r.start_time)) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if page.next_page_token:
        print(f"more runs: expboard runs list --page-token {page.next_page_token} (with the same options)")
    return 0


_LISTED = (  # the fields `expboard runs list --json` shows
    "run_id",
    "experiment",
    "display_name",
    "parent_id",
    "status",
    "start_time",
    "end_time",
    "tags",
    "properties",
)


def _record_json(r: RunRecord) -> dict[str, Any]:
    data = r.to_json()
    return {k: data[k] for k in _LISTED}


def cmd_runs_show(args: argparse.Namespace) -> int:
    import numpy as np

    from .run import Run

    ws = Workspace.from_config()
    run = Run.get(ws, args.run_id)
    details = run.get_details()
    series = run.get_metric_series()
    if args.json:
        details["metrics"] = run.get_metrics()
        print(json.dumps(details, indent=2, default=str))
        return 0
    print(f"Run        {details['runId']}")
    print(f"Experiment {details['experiment']}")
    if details["displayName"]:
        print(f"Name       {details['displayName']}")
    if details["parentRunId"]:
        print(f"Parent     {details['parentRunId']}")
    print(f"Status     {details['status']}")
    print(f"Started    {details['startTimeUtc'] or '-'}")
    print(f"Ended      {details['endTimeUtc'] or '-'}")
    if details.get("error"):
        print(f"Error      {details['error'].get('code')}: {details['error'].get('message')}")
    for label, mapping in (("Tags", details["tags"]), ("Properties", details["properties"])):
        if mapping:
            print(f"{label}:")
            for k, v in mapping.items():
                print(f"  {k} = {v}")
    children = run.get_children()
    if children:
        print(f"Child runs: {len(children)}")
    if series:
        print("Metrics:")
        for s in series:
            n = len(s)
            if isinstance(s.values, np.ndarray) and s.values.dtype.kind in "fiu" and n:
                v = s.values.astype(float)
                summary = f"last={v[-1]:.6g}" + (f" min={np.nanmin(v):.6g} max={np.nanmax(v):.6g}" if n > 1 else "")
            else:
                last = s.values[-1] if n else None
                summary = f"last={json.dumps(last, default=str)[:60]}"
            print(f"  {s.name:<30} {s.kind.value:<8} {n:>8} point{'s' if n != 1 else ' '}  {summary}")
    files = run.get_file_names()
    if files:
        print(f"Files: {len(files)}")
        for name in files[:20]:
            print(f"  {name}")
        if len(files) > 20:
            print(f"  ... and {len(files) - 20} more")
    return 0


def cmd_import_tensorboard(args: argparse.Namespace) -> int:
    from .experiment import Experiment
    from .tbimport import import_tensorboard

    ws = Workspace.from_config()
    result = import_tensorboard(args.logdir, Experiment(ws, args.experiment))
    runs = result.runs
    for run in runs:
        n = sum(len(s) for s in run.get_metric_series())
        print(f"{run.id}  {run.display_name}  ({n} scalar points, {len(run.get_file_names())} event files)")
    print(f"Imported {len(runs)} run{'s' if len(runs) != 1 else ''} into experiment {args.experiment!r}")
    for err in result.damaged:  # one line per damaged file: what was skipped
        print(
            f"expboard: skipped {err.path} from byte offset {err.offset} on: {err.reason} "
            "(the records before it were imported)",
            file=sys.stderr,
        )
    ws.close()
    return 1 if result.damaged else 0


def cmd_journal(args: argparse.Namespace) -> int:
    from . import state

    ws = Workspace.from_config()  # opening it takes over what ended processes left in its metric journal
    buf = state.replay_journals(ws.store)
    records = buf.pending_points()[1] if buf is not None else 0
    if buf is None or not records:
        print(f"no journaled metric points for {ws.tracking_uri}")
        ws.close()
        return 0
    print(f"writing {records} journaled metric batch(es) to {ws.tracking_uri} (waiting up to {args.wait:g} s)")
    try:
        state.replay_journals(ws.store, wait=args.wait)
    except ExpboardError as exc:
        print(f"expboard: the store did not take them: {exc}; they stay in the journal {buf.journal.base}")
        try:
            state.release(ws.store, timeout=0)  # at once: what is left stays journaled for the next try
        except ExpboardError:
            pass
        return 1
    print(f"written: {records} batch(es)")
    ws.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="expboard", description="Experiment run history with TensorBoard.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("init", help="create .expboard/config.json (an embedded workspace) in PATH")
    p.add_argument("path", nargs="?", default=".")
    p.add_argument("--tracking-uri", help="sqlite:///..., postgresql://... or http(s)://... (default: embedded)")
    p.set_defaults(func=cmd_init)

    runs = sub.add_parser("runs", help="list, show, cancel runs and read their logs")
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION")
    runs_sub.required = True
    p = runs_sub.add_parser("list", help="runs, newest first")
    p.add_argument("--experiment", "-e")
    p.add_argument("--all", action="store_true", help="include child runs")
    p.add_argument("--json", action="store_true", help="a JSON list (the next page's token on stderr)")
    p.add_argument("--limit", type=int, default=100, help="runs per page (default 100)")
    p.add_argument("--page-token", help="the token printed after the previous page")
    p.add_argument("--status", action="append", help="only runs in this status (repeatable: any of them)")
    p.add_argument("--tag", action="append", help="k=v (or k): only runs with this tag (repeatable: all of them)")
    p.add_argument("--property", action="append", help="k=v (or k): only runs with this property (repeatable)")
    p.add_argument(
        "--metric", action="append", help='e.g. "mse<0.3": the latest value (highest step) compared (repeatable)'
    )
    p.add_argument("--search", help="text contained in the display name (case-insensitive)")
    p.set_defaults(func=cmd_runs_list)
    p = runs_sub.add_parser("show", help="status, tags and a metrics summary of one run")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs_show)

    p = sub.add_parser("import-tensorboard", help="import TensorBoard event files into run history")
    p.add_argument("logdir", help="a folder of TensorBoard logs; each folder with event files becomes a run")
    p.add_argument("--experiment", "-e", default="imported-tensorboard")
    p.set_defaults(func=cmd_import_tensorboard)

    p = sub.add_parser(
        "journal",
        help="write what ended processes left in the journal while the store was down (metric points, logged images, "
        "final run statuses)",
    )
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the store (default 60)")
    p.set_defaults(func=cmd_journal)

    for register in _EXTENSIONS:
        register(sub, runs_sub)
    return parser


def _version() -> str:
    from . import __version__

    return f"expboard {__version__}"


# Subcommands of the compute, server and TensorBoard parts: each is a function
# (subparsers, runs_subparsers) -> None that calls add_parser(...).set_defaults(func=...). Their modules import
# the library only inside their commands, so ``expboard --help`` stays fast.
_EXTENSIONS: list[Callable[[Any, Any], None]] = [
    register_compute_commands,
    register_model_commands,
    register_server_commands,
    register_tensorboard_commands,
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ExpboardError as exc:
        print(f"expboard: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
