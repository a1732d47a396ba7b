"""The "Runs" tab: an experiment's runs in TensorBoard, with status, times, tags, properties and the last
value of each metric; filterable, sortable, each run linked to its scalars.

Registered through the ``tensorboard_plugins`` entry point (see pyproject.toml), so any TensorBoard in an
environment with expboard installed has it; it is active when TensorBoard reads expboard's data provider
(``--grpc_data_provider``), whose ``expboard.RunTable/List`` method supplies the data. The page lives in
TensorBoard's plugin iframe, so it fetches only from its own routes: ``/index.js`` (the page) and
``/runs`` (JSON). ``/experiment/<name>/`` applies here as everywhere.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import grpc  # type: ignore[import-untyped]
from tensorboard.backend import http_util  # type: ignore[import-untyped]
from tensorboard.plugins import base_plugin  # type: ignore[import-untyped]
from werkzeug import wrappers

from tensorboard import plugin_util  # type: ignore[import-untyped]

from .provider import RUN_TABLE_METHOD

__all__ = ["PLUGIN_NAME", "RunsPlugin"]

PLUGIN_NAME = "expboard_runs"


class RunsPlugin(base_plugin.TBPlugin):  # type: ignore[misc]
    """TensorBoard plugin serving the Runs tab."""

    plugin_name = PLUGIN_NAME

    def __init__(self, context: Any) -> None:
        self._address = getattr(context.flags, "grpc_data_provider", "") if context.flags else ""
        self._channel: Any = None
        self._lock = threading.Lock()

    def get_plugin_apps(self) -> dict[str, Any]:
        return {"/index.js": self._serve_js, "/runs": self._serve_runs}

    def is_active(self) -> bool:
        return bool(self._address)

    def frontend_metadata(self) -> Any:
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Runs", disable_reload=False)

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._channel is None:
                self._channel = grpc.insecure_channel(
                    self._address, options=[("grpc.max_receive_message_length", 256 * 1024 * 1024)]
                )
            channel = self._channel
        method = channel.unary_unary(
            RUN_TABLE_METHOD, request_serializer=lambda d: json.dumps(d).encode(), response_deserializer=json.loads
        )
        result: dict[str, Any] = method(request, timeout=60)
        return result

    def _serve_runs(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = wrappers.Request(environ)
        if not self._address:
            error = {"error": "TensorBoard is not reading expboard's data provider (--grpc_data_provider)"}
            response = http_util.Respond(request, error, "application/json", code=404)
        else:
            try:
                table = self._call({"experiment_id": plugin_util.experiment_id(environ)})
                response = http_util.Respond(request, table, "application/json")
            except grpc.RpcError as exc:
                code = 404 if exc.code() == grpc.StatusCode.NOT_FOUND else 503
                error = {"error": exc.details() or str(exc.code())}
                response = http_util.Respond(request, error, "application/json", code=code)
        return response(environ, start_response)

    def _serve_js(self, environ: dict[str, Any], start_response: Any) -> Any:
        response = http_util.Respond(wrappers.Request(environ), _INDEX_JS, "application/javascript")
        return response(environ, start_response)


_INDEX_JS = r"""
const STATUS_COLORS = {
  Completed: "#2e7d32", Running: "#1565c0", Failed: "#c62828", Canceled: "#6d4c41",
  NotResponding: "#ef6c00", Queued: "#6a1b9a", Starting: "#00838f", Finalizing: "#00838f",
  NotStarted: "#757575", CancelRequested: "#ad1457",
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") node.style.cssText = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function fmtTime(t) { return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : ""; }
function fmtDuration(r) {
  const start = r.start_time || r.created;
  const end = r.end_time || (r.status === "Running" ? Date.now() / 1000 : null);
  if (!start || !end) return "";
  let s = Math.max(0, Math.round(end - start));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60); s = s % 60;
  return h ? `${h}h ${m}m ${s}s` : m ? `${m}m ${s}s` : `${s}s`;
}
function fmtNumber(v) {
  if (typeof v !== "number") return String(v);
  return Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(4) : String(+v.toPrecision(6));
}
function pairs(obj) { return Object.entries(obj || {}).map(([k, v]) => `${k}=${v}`).join(", "); }
function escapeRegex(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

export async function render() {
  const style = el("style", {}, `
    body { font-family: Roboto, sans-serif; font-size: 13px; margin: 16px; color: #212121; }
    h2 { font-size: 18px; font-weight: 500; margin: 0 12px 0 0; display: inline; }
    .bar { display: flex; align-items: center; gap: 12px; margin-bottom: 12px; }
    input { font-size: 13px; padding: 6px 8px; width: 320px; border: 1px solid #bdbdbd; border-radius: 4px; }
    table { border-collapse: collapse; width: 100%; }
    th { text-align: left; background: #f5f5f5; cursor: pointer; user-select: none; white-space: nowrap; }
    th, td { padding: 6px 10px; border-bottom: 1px solid #e0e0e0; vertical-align: top; }
    tr:hover td { background: #fafafa; }
    .status { color: white; border-radius: 10px; padding: 2px 8px; font-size: 12px; white-space: nowrap; }
    .num { text-align: right; font-variant-numeric: tabular-nums; }
    .muted { color: #757575; }
    a { color: #1565c0; text-decoration: none; cursor: pointer; }
    .scope { margin-bottom: 10px; }
  `);
  document.head.append(style);
  const filter = el("input", { placeholder: "Filter runs (name, status, tag, property)", id: "filter" });
  const count = el("span", { class: "muted", id: "count" });
  const table = el("table", { id: "runs" });
  const scope = el("div", { class: "muted scope", id: "scope" });
  document.body.append(el("div", { class: "bar" }, el("h2", {}, "Runs"), filter, count), scope, table);
  // the frame's own URL may preset them: plugin_entry.html?name=expboard_runs&filter=...&sort=-metric:mse
  const params = new URLSearchParams(location.search);
  filter.value = params.get("filter") || "";
  const presetSort = params.get("sort") || "-created";
  let rows = [], metricNames = [];
  let sortKey = presetSort.replace(/^-/, ""), sortDir = presetSort.startsWith("-") ? -1 : 1;

  async function load() {
    const resp = await fetch("./runs");
    const body = await resp.json();
    if (!resp.ok) { table.replaceChildren(el("tr", {}, el("td", {}, body.error || resp.statusText))); return; }
    rows = body.runs;
    showScope(body);
    metricNames = [...new Set(rows.flatMap(r => Object.keys(r.metrics)))].sort();
    draw();
  }

  function showScope(body) {
    // the root of a TensorBoard over every experiment: its newest runs, and a link to each experiment
    if (!body.newest_of_all) { scope.replaceChildren(); return; }
    const links = body.experiments.map(name => {
      const a = el("a", { "data-experiment": name, title: "this experiment's runs, child runs included" }, name);
      a.addEventListener("click", () => {
        const top = window.top.location;
        top.href = top.pathname.replace(/\/?$/, "/") + "experiment/" + encodeURIComponent(name) + "/#expboard_runs";
      });
      return a;
    });
    scope.replaceChildren(`The newest ${body.newest_of_all} runs of all experiments (as <experiment>/<run>). ` +
      "Experiments: ", ...links.flatMap((a, i) => i ? [", ", a] : [a]));
  }

  function value(r, key) {
    if (key.startsWith("metric:")) return r.metrics[key.slice(7)];
    if (key === "duration") return (r.end_time || Date.now() / 1000) - (r.start_time || r.created);
    if (key === "start") return r.start_time || r.created;
    if (key === "tags") return pairs(r.tags);
    if (key === "properties") return pairs(r.properties);
    return r[key];
  }

  function draw() {
    const columns = [
      ["run", "Run"], ["status", "Status"], ["start", "Start (UTC)"], ["duration", "Duration"],
      ["tags", "Tags"], ["properties", "Properties"], ...metricNames.map(m => ["metric:" + m, m]),
    ];
    const needle = filter.value.toLowerCase();
    const shown = rows.filter(r => !needle || [r.run, r.display_name, r.run_id, r.status, pairs(r.tags),
      pairs(r.properties)].join(" ").toLowerCase().includes(needle));
    shown.sort((a, b) => {
      const x = value(a, sortKey), y = value(b, sortKey);
      if (x === y) return 0;
      if (x === undefined || x === null) return 1;
      if (y === undefined || y === null) return -1;
      return (x < y ? -1 : 1) * sortDir;
    });
    const head = el("tr", {}, ...columns.map(([key, label]) => {
      const th = el("th", { "data-key": key }, label + (key === sortKey ? (sortDir > 0 ? " \u25B2" : " \u25BC") : ""));
      th.addEventListener("click", () => { sortDir = key === sortKey ? -sortDir : 1; sortKey = key; draw(); });
      return th;
    }));
    const body = shown.map(r => {
      const link = el("a", { title: "show this run's scalars" }, r.display_name || r.run);
      link.addEventListener("click", () => {
        const top = window.top.location;  // TensorBoard's deep link: the Time Series dashboard, filtered to the run
        top.href = top.pathname + "?runFilter=" + encodeURIComponent("^" + escapeRegex(r.run) + "$") + "#timeseries";
      });
      const badge = el("span", { class: "status", style: `background:${STATUS_COLORS[r.status] || "#757575"}` },
        r.status);
      return el("tr", { "data-run": r.run },
        el("td", {}, link, el("div", { class: "muted" }, r.run)),
        el("td", {}, badge), el("td", {}, fmtTime(r.start_time || r.created)), el("td", {}, fmtDuration(r)),
        el("td", {}, pairs(r.tags)), el("td", {}, pairs(r.properties)),
        ...metricNames.map(m => el("td", { class: "num" }, m in r.metrics ? fmtNumber(r.metrics[m]) : "")));
    });
    table.replaceChildren(head, ...body);
    count.textContent = `${shown.length} of ${rows.length} runs`;
  }

  filter.addEventListener("input", draw);
  await load();
  setInterval(load, 30000);
}
"""
