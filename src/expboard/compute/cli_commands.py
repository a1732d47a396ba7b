"""CLI commands for script runs: ``submit``, ``runs cancel``, ``runs logs``, ``compute list|attach|show``,
``demo``.

Registered into :mod:`expboard.cli` through ``cli._EXTENSIONS``; every import of the library happens inside
the command functions so that ``expboard --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import ValidationError

__all__ = ["register"]


_SUBMIT_OPTIONS = {"--experiment": "experiment", "-e": "experiment", "--source": "source", "--target": "target"}


def _split_submit_args(args: argparse.Namespace) -> list[str]:
    """expboard's own options may also follow SCRIPT (``submit train.py --lr 1 --experiment x``); what is not
    one of them, and everything after ``--``, goes to the script."""
    rest = list(args.args)
    script_args: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        key, eq, value = arg.partition("=")
        if arg == "--":
            script_args += rest[i + 1 :]
            break
        if key in _SUBMIT_OPTIONS or key == "--tag":
            if not eq:
                if i + 1 >= len(rest):
                    raise ValidationError(f"{key} needs a value")
                i += 1
                value = rest[i]
            if key == "--tag":
                args.tag = [*(args.tag or []), value]
            else:
                setattr(args, _SUBMIT_OPTIONS[key], value)
        elif arg == "--wait":
            args.wait = True
        else:
            script_args.append(arg)
        i += 1
    return script_args


def cmd_submit(args: argparse.Namespace) -> int:
    from ..experiment import Experiment
    from ..workspace import Workspace
    from .config import ScriptRunConfig

    args.args = _split_submit_args(args)
    if not args.experiment:
        raise ValidationError("expboard submit needs --experiment NAME")
    ws = Workspace.from_config()
    config = ScriptRunConfig(args.source, args.script, args.args, compute_target=args.target)
    tags = dict(t.split("=", 1) if "=" in t else (t, "") for t in args.tag or [])
    run = Experiment(ws, args.experiment).submit(config, tags=tags)
    print(f"Submitted run {run.id} to compute target {args.target!r} (status {run.get_status().value})")
    if not args.wait:
        print(f"Follow it with: expboard runs logs {run.id} --follow")
        return 0
    details = run.wait_for_completion(show_output=True, raise_on_error=False)
    if details["status"] != "Completed":
        message = (details.get("error") or {}).get("message", "")
        print(
            f"expboard: run {run.id} ended {details['status']}" + (f": {message}" if message else ""), file=sys.stderr
        )
        return 1
    return 0


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    from ..run import Run
    from ..workspace import Workspace

    ws = Workspace.from_config()
    run = Run.get(ws, args.run_id)
    before = run.get_status()
    if before.is_terminal:
        print(f"run {run.id} has already ended ({before.value})")
        return 0
    run.cancel()
    status = run.get_status()
    print(f"run {run.id}: {status.value}")
    if args.wait and not status.is_terminal:
        details = run.wait_for_completion(raise_on_error=False)
        print(f"run {run.id}: {details['status']}")
    return 0


def cmd_runs_logs(args: argparse.Namespace) -> int:
    from ..run import Run
    from ..transfer import DRIVER_LOG, iter_log
    from ..workspace import Workspace

    ws = Workspace.from_config()
    run = Run.get(ws, args.run_id)
    name = args.file or DRIVER_LOG
    for text in iter_log(run.store, run.id, name, has_ended=run.has_ended if args.follow else None):
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def cmd_compute_list(args: argparse.Namespace) -> int:
    from ..errors import ExpboardError
    from ..workspace import Workspace
    from .targets import TargetStatus

    ws = Workspace.from_config()
    statuses = []
    for t in ws.compute_targets.list():
        try:
            statuses.append(t.get_status())
        except ExpboardError as exc:  # one cluster down does not hide the others
            statuses.append(TargetStatus(t.name, t.type, "Unreachable", 0, 0, 0, details={"error": str(exc)}))
    if args.json:
        print(json.dumps([s.serialize() for s in statuses], indent=2))
        return 0
    rows = [("NAME", "TYPE", "STATE", "NODES", "CPUS", "GPUS", "ACTIVE RUNS")]
    rows += [(s.name, s.type, s.state, str(s.nodes), str(s.cpus), str(s.gpus), str(s.active_runs)) for s in statuses]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_compute_attach(args: argparse.Namespace) -> int:
    from ..workspace import Workspace
    from .ray import RayCompute
    from .targets import ComputeTarget

    ws = Workspace.from_config()
    options: dict[str, Any] = {}
    if args.python:
        options["python"] = args.python
    if args.resources:
        try:
            options["resources"] = json.loads(args.resources)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"--resources must be JSON like '{{\"CPU\": 2}}': {exc.msg}") from None
    if args.run_on_head:
        options["run_on_head"] = True
    if args.queue_timeout is not None:
        options["queue_timeout_s"] = args.queue_timeout
    configuration = RayCompute.attach_configuration(address=args.address, **options)
    if not args.no_check:  # before saving: an address that does not answer is not attached
        configuration.create_target(args.name).wait_for_completion(show_output=True, timeout=args.timeout)
    ComputeTarget.attach(ws, args.name, configuration)
    print(f"Attached Ray cluster {args.address} as compute target {args.name!r}")
    return 0


def cmd_compute_show(args: argparse.Namespace) -> int:
    from ..workspace import Workspace

    ws = Workspace.from_config()
    target = ws.compute_targets[args.name]
    status = target.get_status().serialize()
    config = target.to_config()
    if args.json:
        print(json.dumps({"config": config, "status": status}, indent=2))
        return 0
    print(f"{status['name']}  ({status['type']}, {status['state']})")
    for key, value in config.items():
        print(f"  {key}: {value}")
    gib = 1024**3
    if status["type"] == "Ray":
        print(f"  nodes: {status['nodesAlive']} alive, {status['nodesDead']} dead")
        print(f"  CPUs: {status['cpusUsed']:g} used of {status['cpus']}")
        print(f"  GPUs: {status['gpusUsed']:g} used of {status['gpus']}")
        print(f"  memory: {status['memoryUsed'] / gib:.1f} GiB used of {status['memoryTotal'] / gib:.1f} GiB")
        for node in status["nodeList"]:
            head = " (head)" if node["head"] else ""
            resources = ", ".join(
                f"{k}={v:g}" for k, v in sorted(node["resources"].items()) if k not in ("memory", "object_store_memory")
            )
            print(f"    {node['nodeId'][:12]} {node['ip']} {node['state']}{head}: {resources}")
    else:
        print(f"  nodes: {status['nodes']}, CPUs: {status['cpus']}, GPUs: {status['gpus']}")
    print(f"  active runs: {status['activeRuns']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(workdir=args.workdir, port=args.port, wait=not args.no_wait)


def register(sub: Any, runs_sub: Any) -> None:
    """Add the commands to the ``expboard`` parser (``sub``) and its ``runs`` group (``runs_sub``)."""
    p = sub.add_parser(
        "submit",
        help="run a script on a compute target as a run of an experiment",
        description="Snapshot the source folder and run SCRIPT there on a compute target; its ./logs are "
        "streamed into the run while it runs. Arguments after SCRIPT go to the script, except expboard's own "
        "options; put script arguments after -- to pass them verbatim.",
    )
    p.add_argument("script", help="path of the script, relative to --source")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    p.add_argument("--experiment", "-e", help="experiment name (required)")
    p.add_argument("--source", default=".", help="source folder to snapshot (default: the current folder)")
    p.add_argument("--target", default="local", help="compute target name (default: local)")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="a tag for the run (repeatable)")
    p.add_argument("--wait", action="store_true", help="stream the driver log until the run ends")
    p.set_defaults(func=cmd_submit)

    p = runs_sub.add_parser("cancel", help="cancel a run (a submitted script is stopped by its agent)")
    p.add_argument("run_id")
    p.add_argument("--wait", action="store_true", help="wait until the run has ended")
    p.set_defaults(func=cmd_runs_cancel)

    p = runs_sub.add_parser("logs", help="print a run's driver log (stdout and stderr of its script)")
    p.add_argument("run_id")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    p.add_argument("--file", help="another log file of the run, like system_logs/agent.log")
    p.set_defaults(func=cmd_runs_logs)

    compute = sub.add_parser("compute", help="compute targets")
    compute_sub = compute.add_subparsers(dest="compute_command", metavar="ACTION")
    compute_sub.required = True
    p = compute_sub.add_parser("list", help="compute targets with nodes, CPUs, GPUs and active runs")
    p.add_argument("--json", action="store_true", help="a JSON list, one object per target, for scripts")
    p.set_defaults(func=cmd_compute_list)
    p = compute_sub.add_parser(
        "attach",
        help="attach existing compute by name (a Ray cluster)",
        description="Attach a Ray cluster by its Jobs API (dashboard) address and save it in the workspace; "
        "runs submitted with --target NAME then run there as Ray jobs.",
    )
    p.add_argument("type", choices=["ray"], help="the kind of compute")
    p.add_argument("name", help="the target's name in this workspace")
    p.add_argument("--address", required=True, help="the cluster's Jobs API URL, like http://HOST:8265")
    p.add_argument("--python", help="the interpreter with expboard on the cluster's nodes (default: python)")
    p.add_argument("--resources", help="what one process of a run needs by default, JSON: '{\"CPU\": 1}'")
    p.add_argument("--run-on-head", action="store_true", help="let runs use the head node too")
    p.add_argument("--queue-timeout", type=float, help="seconds a run may wait for resources (default: no limit)")
    p.add_argument("--timeout", type=float, default=30, help="seconds to wait for the cluster to answer")
    p.add_argument("--no-check", action="store_true", help="attach without asking the cluster")
    p.set_defaults(func=cmd_compute_attach)
    p = compute_sub.add_parser(
        "show",
        help="one compute target: its settings, nodes, CPUs, GPUs, memory, runs",
        description="Show a compute target's settings and its state read from the cluster (nodes alive and "
        "dead, CPUs, GPUs, memory used and total, active runs); runs of a Ray target whose job has ended "
        "are ended on the way.",
    )
    p.add_argument("name", help="the target's name in this workspace (local, or an attached one)")
    p.add_argument("--json", action="store_true", help="the settings and the status as JSON, for scripts")
    p.set_defaults(func=cmd_compute_show)

    p = sub.add_parser(
        "demo",
        help="both TensorBoard workflows (exported run history, live script logs) in a demo workspace",
        description="A Ridge regression sweep logged as child runs and exported to TensorBoard, and a training "
        "script submitted to the local target writing TensorBoard files under ./logs, shown live. Both in one "
        "TensorBoard; Ctrl-C stops everything.",
    )
    p.add_argument("--workdir", help="folder for the demo workspace (default: ./expboard-demo)")
    p.add_argument("--port", type=int, default=6006, help="TensorBoard port (0 picks a free one; default 6006)")
    p.add_argument("--no-wait", action="store_true", help="stop TensorBoard and exit when the demo is done")
    p.set_defaults(func=cmd_demo)
