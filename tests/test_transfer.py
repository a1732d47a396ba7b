"""Uploading folders never stores what lies outside them: links that leave are skipped with a warning."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from expboard import Experiment, Workspace
from expboard.transfer import FolderUpload, iter_files


def _tree(tmp_path: Path) -> Path:
    """A folder with a file, a link inside it, links out of it (to a file and a folder), a dangling link,
    a link cycle and a named pipe."""
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "passwords.txt").write_text("hunter2")
    root = tmp_path / "folder"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "sub" / "b.txt").write_text("b")
    os.symlink(root / "a.txt", root / "inside-link.txt")
    os.symlink(outside / "passwords.txt", root / "leak.txt")
    os.symlink("../../secret/passwords.txt", root / "sub" / "relative-leak.txt")
    os.symlink(outside, root / "leak-dir")
    os.symlink(root, root / "sub" / "loop")
    os.symlink(root / "missing", root / "dangling")
    os.mkfifo(root / "pipe")
    return root


def test_iter_files_keeps_the_folder_closed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _tree(tmp_path)
    with caplog.at_level(logging.WARNING, logger="expboard.transfer"):
        names = [rel for _, rel in iter_files(root)]
    assert names == ["a.txt", "inside-link.txt", "sub/b.txt"]
    skipped = sorted(r.getMessage().split(": it is a symbolic link")[0] for r in caplog.records)
    assert skipped == sorted(f"expboard: skipped {root / n}" for n in ("leak.txt", "sub/relative-leak.txt", "leak-dir"))
    assert all("outside" in r.getMessage() for r in caplog.records)


def test_upload_folder_skips_links_that_leave(ws: Workspace, tmp_path: Path) -> None:
    root = _tree(tmp_path)
    run = Experiment(ws, "links").start_logging()
    stored = run.upload_folder("up", root)
    run.complete()
    assert stored == ["up/a.txt", "up/inside-link.txt", "up/sub/b.txt"]
    assert sorted(run.get_file_names()) == stored
    out = tmp_path / "down"
    run.download_files(output_directory=out)
    assert "hunter2" not in "".join(p.read_text() for p in out.rglob("*") if p.is_file())


def test_a_scripts_logs_folder_leaks_nothing_and_warns_once(
    ws: Workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _tree(tmp_path)
    run = Experiment(ws, "live-links").start_logging()
    mirror = FolderUpload(ws.store, run.id, root, "logs")
    with caplog.at_level(logging.WARNING, logger="expboard.transfer"):
        mirror.sync()
        (root / "a.txt").write_text("a, appended")
        mirror.sync()
        outputs = mirror.upload_all()
    run.complete()
    assert outputs == ["logs/a.txt", "logs/inside-link.txt", "logs/sub/b.txt"]
    assert sorted(run.get_file_names()) == outputs
    assert len(caplog.records) == 3  # one per link that leaves, not one per poll
