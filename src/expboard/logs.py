"""Reading a run's driver log (``system_logs/driver.log``): all of it, or following it while the run runs.

>>> for text in iter_log(run, follow=True):      # doctest: +SKIP
...     print(text, end="")
"""

from __future__ import annotations

import codecs
import sys
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from .errors import NotFoundError
from .records import RunStatus

if TYPE_CHECKING:
    from .run import Run

__all__ = ["DRIVER_LOG", "follow_log", "iter_log", "run_has_ended"]

DRIVER_LOG = "system_logs/driver.log"
_ENDED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.NOT_RESPONDING)


def run_has_ended(run: Run) -> bool:
    """Whether the run reached a final status, NotResponding included (``get_status`` checks the heartbeat)."""
    return run.get_status() in _ENDED


def iter_log(
    run: Run,
    follow: bool = False,
    name: str = DRIVER_LOG,
    poll_interval: float = 0.25,
    deadline: float | None = None,
) -> Iterator[str]:
    """Yield the log's text as it is stored. With ``follow``, keep yielding new text until the run ends
    (or ``deadline``, a ``time.monotonic()`` value, passes) and then everything that is left."""
    store = run._store
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    offset = 0
    while True:
        ended = run_has_ended(run) if follow else True  # checked before reading: no text is left behind
        try:
            data = store.read_file(run.id, name, offset)
        except NotFoundError:
            data = b""
        if data:
            offset += len(data)
            text = decoder.decode(data)
            if text:
                yield text
        if ended or (deadline is not None and time.monotonic() > deadline):
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
            return
        if not data:
            time.sleep(poll_interval)


def follow_log(run: Run, deadline: float | None = None, out: IO[str] | None = None) -> None:
    """Print the run's driver log to ``out`` (stdout) while the run runs, like Azure ML's
    ``wait_for_completion(show_output=True)``."""
    stream = out if out is not None else sys.stdout
    print(f"RunId: {run.id}", file=stream)
    print(f"Streaming {DRIVER_LOG}", file=stream)
    print("=" * 40, file=stream, flush=True)
    for text in iter_log(run, follow=True, deadline=deadline):
        stream.write(text)
        stream.flush()
    status = run.get_status()
    print("\n" + "=" * 40, file=stream)
    print("Execution Summary", file=stream)
    print(f"RunId: {run.id}", file=stream)
    print(f"Status: {status.value}", file=stream, flush=True)
