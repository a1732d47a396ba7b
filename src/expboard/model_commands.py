"""``expboard models list|show|download``: the model registry from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

__all__ = ["register"]


def cmd_models_list(args: argparse.Namespace) -> int:
    from .model import Model
    from .workspace import Workspace

    ws = Workspace.from_config()
    try:
        models = Model.list(ws, name=args.name, tags=args.tag, latest=args.latest)
        if args.json:
            sys.stdout.write(json.dumps([m.serialize() for m in models]) + "\n")
            return 0
        if not models:
            print("no registered models" + (f" named {args.name!r}" if args.name else ""))
            return 0
        rows = [("NAME", "VERSION", "RUN ID", "CREATED", "TAGS")]
        for m in models:
            tags = ",".join(f"{k}={v}" for k, v in sorted(m.tags.items()))
            created = datetime.fromtimestamp(m.record.created).strftime("%Y-%m-%d %H:%M:%S")
            rows.append((m.name, str(m.version), m.run_id or "-", created, tags))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        return 0
    finally:
        ws.close()


def cmd_models_show(args: argparse.Namespace) -> int:
    from .model import Model
    from .workspace import Workspace

    ws = Workspace.from_config()
    try:
        model = Model(ws, args.name, version=args.version)
        data: dict[str, Any] = {**model.serialize(), "files": model.get_files()}
        if args.json:
            sys.stdout.write(json.dumps(data) + "\n")
            return 0
        for key in ("id", "createdTime", "description", "runId", "experimentName"):
            print(f"{key + ':':16}{data[key] if data[key] not in (None, '') else '-'}")
        for key in ("kvTags", "properties"):
            values = data[key]
            print(f"{key + ':':16}" + (", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "-"))
        print("files:")
        for name in data["files"]:
            print(f"  {name}")
        return 0
    finally:
        ws.close()


def cmd_models_download(args: argparse.Namespace) -> int:
    from .model import Model
    from .workspace import Workspace

    ws = Workspace.from_config()
    try:
        path = Model(ws, args.name, version=args.version).download(args.target_dir, exist_ok=args.exist_ok)
        print(path)
        return 0
    finally:
        ws.close()


def register(sub: Any, runs_sub: Any) -> None:
    """Add the ``models`` command to the ``expboard`` parser."""
    models = sub.add_parser("models", help="list, show and download registered models")
    models_sub = models.add_subparsers(dest="models_command", metavar="ACTION")
    models_sub.required = True
    p = models_sub.add_parser("list", help="registered model versions, by name then newest first")
    p.add_argument("--name", "-n", help="only versions of this model")
    p.add_argument("--tag", action="append", help="only versions with this tag key (repeatable: all of them)")
    p.add_argument("--latest", action="store_true", help="only each model's newest version")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_list)
    p = models_sub.add_parser("show", help="one version: tags, properties, source run and files")
    p.add_argument("name")
    p.add_argument("--version", "-v", type=int, help="default: the latest")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_show)
    p = models_sub.add_parser("download", help="download a version's files into TARGET_DIR")
    p.add_argument("name")
    p.add_argument("target_dir", nargs="?", default=".")
    p.add_argument("--version", "-v", type=int, help="default: the latest")
    p.add_argument("--exist-ok", action="store_true", help="overwrite files already there")
    p.set_defaults(func=cmd_models_download)
