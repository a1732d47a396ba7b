"""Helpers every benchmark shares: the machine load printed with each result, and a free local port."""

from __future__ import annotations

import os
import socket
import subprocess


def uptime() -> str:
    """``uptime``'s line (load averages), to be recorded with every result."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
