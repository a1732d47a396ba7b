"""A live view of a run in Jupyter, as Azure ML's ``azureml.widgets.RunDetails``.

>>> from expboard.widgets import RunDetails      # doctest: +SKIP
>>> RunDetails(run).show()                       # doctest: +SKIP

The view is an ipywidgets tree (a ``VBox``): a header (status, duration, times, the TensorBoard serving the
run), a table of the last value of every metric, a small chart per numeric series, and for a parent run a
table of its child runs. While the run is active a background thread refreshes it every
``refresh_interval`` seconds; the thread stops once the run has ended (after a last refresh), or when the
widget is closed (``RunDetails.close()`` or ``widget.close()``).

ipywidgets is an optional extra: ``pip install 'expboard[notebook]'``. Without it, ``RunDetails(run)``
raises an error saying so (importing this module works either way).
"""

from __future__ import annotations

import html
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from .errors import ExpboardError
from .records import TERMINAL_STATUSES, MetricKind, RunRecord, RunStatus

if TYPE_CHECKING:
    from .run import Run

__all__ = ["RunDetails", "format_duration"]

_INSTALL = (
    "RunDetails needs ipywidgets, an optional extra: pip install 'expboard[notebook]' "
    "(or pip install ipywidgets), then restart the kernel"
)
_ENDED = (*TERMINAL_STATUSES, RunStatus.NOT_RESPONDING)
_COLORS = {
    RunStatus.COMPLETED: "#2e7d32",
    RunStatus.FAILED: "#c62828",
    RunStatus.CANCELED: "#6d6d6d",
    RunStatus.NOT_RESPONDING: "#c62828",
    RunStatus.RUNNING: "#1565c0",
}
MAX_CHARTS = 12  # charts shown (the first numeric series by name); every metric is in the table
CHART_POINTS = 200  # points read per chart (longer series are thinned by the store)


def _ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError as exc:
        raise ExpboardError(_INSTALL) from exc
    return ipywidgets


def format_duration(seconds: float | None) -> str:
    """``H:MM:SS`` as Azure ML's widget shows a run's duration ('' when it has not started)."""
    if seconds is None:
        return ""
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _duration(r: RunRecord, now: float) -> float | None:
    if r.start_time is None:
        return None
    return (r.end_time if r.end_time is not None else now) - r.start_time


def _value_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict):
        return str(v.get("schema_type") or "table")
    return str(v)


def _chart(name: str, steps: list[int], values: list[float], width: int = 260, height: int = 120) -> str:
    """An inline SVG line chart of one series (min and max labelled), plain HTML for any front end."""
    pts = [(s, v) for s, v in zip(steps, values, strict=False) if math.isfinite(v)]
    title = f'<div style="font:12px sans-serif;font-weight:bold">{html.escape(name)}</div>'
    if not pts:
        return f"<div>{title}<i>no finite values yet</i></div>"
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    pad = 6

    def sx(x: float) -> float:
        return pad + (width - 2 * pad) * ((x - x0) / (x1 - x0) if x1 > x0 else 0.5)

    def sy(y: float) -> float:
        return height - pad - (height - 2 * pad) * ((y - y0) / (y1 - y0) if y1 > y0 else 0.5)

    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
    shape = (
        f'<polyline fill="none" stroke="#1565c0" stroke-width="2" points="{line}"/>'
        if len(pts) > 1
        else f'<circle cx="{sx(pts[0][0]):.1f}" cy="{sy(pts[0][1]):.1f}" r="3" fill="#1565c0"/>'
    )
    labels = (
        f'<text x="{pad}" y="12" font-size="10" fill="#555">{y1:.4g}</text>'
        f'<text x="{pad}" y="{height - 1}" font-size="10" fill="#555">{y0:.4g}</text>'
        f'<text x="{width - pad}" y="{height - 1}" font-size="10" fill="#555" text-anchor="end">step {x1}</text>'
    )
    svg = (
        f'<svg class="expboard-chart" width="{width}" height="{height}" '
        f'style="border:1px solid #ddd;background:#fff">{shape}{labels}</svg>'
    )
    return f'<div style="display:inline-block;margin:4px">{title}{svg}</div>'


def _table(head: list[str], rows: list[list[str]], cls: str) -> str:
    h = "".join(f"<th style='text-align:left;padding:2px 8px'>{html.escape(c)}</th>" for c in head)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:2px 8px'>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{cls}" style="border-collapse:collapse;font:13px sans-serif"><tr>{h}</tr>{body}</table>'


class RunDetails:
    """A live status and metrics view of ``run_instance`` in Jupyter (see the module's documentation).

    ``refresh_interval``: seconds between refreshes while the run is active."""

    def __init__(self, run_instance: Run, refresh_interval: float = 2.0) -> None:
        widgets = _ipywidgets()
        self.run = run_instance
        self.refresh_interval = float(refresh_interval)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last_status = RunStatus.NOT_STARTED
        self._header_html = ""
        self.header = widgets.HTML()
        self.metrics = widgets.HTML()
        self.charts = widgets.HTML()
        self.children = widgets.HTML()
        self.widget = _closing_box(widgets)(
            [self.header, self.metrics, self.charts, self.children], on_close=self._stop_refresh
        )
        self.refresh()

    # --- data -------------------------------------------------------------------------------------
    def get_widget_data(self) -> dict[str, Any]:
        """What the view shows, as data: status, duration, the last value of each metric, the series of the
        charted metrics and the child runs."""
        run = self.run
        try:
            run.flush(timeout=5)  # what this process logged is buffered: show it too
        except ExpboardError:
            pass  # a store that is away: show what it has
        status = run.get_status()
        r = run.record
        now = time.time()
        store = run.store
        infos = sorted(store.get_metric_info([run.id]), key=lambda i: i.name)
        charted = [i for i in infos if i.numeric and i.kind in (MetricKind.SCALAR, MetricKind.LIST)][:MAX_CHARTS]
        series: dict[str, tuple[list[int], list[float]]] = {}
        for info in charted:
            for s in store.get_metrics(run.id, info.name, max_points=CHART_POINTS):
                series[s.name] = ([int(x) for x in s.steps], [float(x) for x in s.values])
        children = []
        for child in sorted(run.get_children(), key=lambda c: (c.record.number or 0, c.record.created)):
            c = child.record
            last = {i.name: i.last_value for i in store.get_metric_info([c.run_id]) if i.numeric}
            children.append(
                {
                    "runId": c.run_id,
                    "number": c.number,
                    "displayName": c.display_name,
                    "status": c.status.value,
                    "duration": format_duration(_duration(c, now)),
                    "metrics": last,
                }
            )
        return {
            "runId": r.run_id,
            "displayName": r.display_name,
            "status": status.value,
            "duration": format_duration(_duration(r, now)),
            "portalUrl": run.get_portal_url(),
            "metrics": {i.name: i.last_value for i in infos},
            "series": series,
            "children": children,
            "error": (r.error or {}).get("message"),
        }

    # --- rendering --------------------------------------------------------------------------------
    def _render(self, data: dict[str, Any]) -> dict[str, str]:
        status = RunStatus(data["status"])
        color = _COLORS.get(status, "#444")
        url = data["portalUrl"]
        link = f' &middot; <a href="{html.escape(url)}" target="_blank">TensorBoard</a>' if url else ""
        error = f'<div style="color:#c62828">{html.escape(data["error"])}</div>' if data["error"] else ""
        header = (
            f'<div class="expboard-run-header" style="font:14px sans-serif">'
            f"<b>{html.escape(data['displayName'] or data['runId'])}</b> "
            f'<span style="color:#666">{html.escape(data["runId"])}</span><br>'
            f'Status: <b class="expboard-status" style="color:{color}">{html.escape(status.value)}</b>'
            f" &middot; Duration: <span class='expboard-duration'>{html.escape(data['duration'])}</span>{link}"
            f"{error}</div>"
        )
        rows = [[name, _value_text(v)] for name, v in data["metrics"].items()]
        metrics = _table(["Metric", "Last value"], rows, "expboard-metrics") if rows else "<i>no metrics yet</i>"
        metrics = f'<div style="margin:6px 0"><b style="font:bold 13px sans-serif">Metrics</b>{metrics}</div>'
        charts = "".join(_chart(name, s, v) for name, (s, v) in data["series"].items())
        charts = f"<div>{charts}</div>" if charts else ""
        children = ""
        if data["children"]:
            names = sorted({m for c in data["children"] for m in c["metrics"]})
            rows = [
                [str(c["number"] or ""), c["displayName"], c["status"], c["duration"]]
                + [_value_text(c["metrics"][m]) if m in c["metrics"] else "" for m in names]
                for c in data["children"]
            ]
            table = _table(["Number", "Display name", "Status", "Duration", *names], rows, "expboard-children")
            children = f'<div style="margin:6px 0"><b style="font:bold 13px sans-serif">Child runs</b>{table}</div>'
        return {"header": header, "metrics": metrics, "charts": charts, "children": children}

    def refresh(self) -> dict[str, Any]:
        """Read the run again and update the view; returns :meth:`get_widget_data`."""
        with self._lock:
            data = self.get_widget_data()
            parts = self._render(data)
            self.header.value = self._header_html = parts["header"]
            self.metrics.value = parts["metrics"]
            self.charts.value = parts["charts"]
            self.children.value = parts["children"]
            self.last_status = RunStatus(data["status"])
            return data

    def to_html(self) -> str:
        """The view as one static HTML fragment (what the widgets show now)."""
        return "".join(w.value for w in (self.header, self.metrics, self.charts, self.children))

    # --- life cycle -------------------------------------------------------------------------------
    @property
    def refreshing(self) -> bool:
        """Whether the refresh thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def show(self) -> None:
        """Display the view (in Jupyter) and refresh it while the run is active."""
        import IPython.display

        cast(Any, IPython.display).display(self.widget)  # untyped in some IPython versions
        self.start()

    def start(self) -> None:
        """Start refreshing every ``refresh_interval`` seconds until the run ends or the view is closed
        (:meth:`show` does this)."""
        if self.refreshing or self._stop.is_set() or self.last_status in _ENDED:
            return
        self._thread = threading.Thread(target=self._loop, name=f"expboard-run-details-{self.run.id}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_interval):
            try:
                data = self.refresh()
            except Exception as exc:  # a store that is away: say so in the view, try again later
                note = f'<div style="color:#c62828">refresh failed: {html.escape(str(exc))}</div>'
                self.header.value = self._header_html + note  # the last good header, one note (not piled up)
                continue
            if RunStatus(data["status"]) in _ENDED:
                return

    def _stop_refresh(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    def close(self) -> None:
        """Stop refreshing and close the widgets."""
        self.widget.close()  # calls _stop_refresh

    def __repr__(self) -> str:
        return f"RunDetails(run={self.run.id!r}, status={self.last_status.value!r})"


_box_class: Any = None


def _closing_box(widgets: Any) -> Callable[..., Any]:
    """A VBox that calls ``on_close`` when it is closed, so the refresh thread ends with the widget."""
    global _box_class
    if _box_class is not None:
        return _box_class  # type: ignore[no-any-return]

    class RunDetailsBox(widgets.VBox):  # type: ignore[misc]
        def __init__(self, children: list[Any], on_close: Callable[[], None]) -> None:
            super().__init__(children)
            self._on_close = on_close

        def close(self) -> None:
            self._on_close()
            for child in self.children:
                child.close()
            super().close()

    _box_class = RunDetailsBox
    return RunDetailsBox
