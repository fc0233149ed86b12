"""Health, metrics and a status page on a local HTTP port (standard library only).

* ``/healthz``: 200 and ``{"status": "ok", ...}`` while the node runs (its scoring slots and
  outbox alive, scoring not stalled), else 503 with a ``reason``: what a supervisor or a
  container probe asks.
* ``/metrics``: Prometheus text (:class:`~edgevcf.serve.metrics.Metrics`).
* ``/`` (``/status``): a small page for the cart's technician, ``/status.json`` the same as
  JSON: model id and bundle hash, queue depths, destinations, the last results by hashed UID
  and decision. Never a name, an ID or a clear UID.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

log = logging.getLogger(__name__)


def start_http(service: Any) -> ThreadingHTTPServer:
    """Serve ``service``'s pages on ``[http] host:port`` in a daemon thread.

    Raises:
        ConfigError: the port cannot be opened.
    """
    from edgevcf.errors import ConfigError

    class Handler(BaseHTTPRequestHandler):
        server_version = "edgevcf"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # stdlib's name
            log.debug("http: " + format, *args)

        def do_GET(self) -> None:  # stdlib's name
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                alive = service.healthy()
                body = json.dumps({"status": "ok" if alive else "failing", **service.health()})
                self._send(200 if alive else 503, body, "application/json")
            elif path == "/metrics":
                self._send(200, service.metrics.text(), "text/plain; version=0.0.4")
            elif path == "/status.json":
                self._send(200, json.dumps(service.status(), indent=1), "application/json")
            elif path in ("/", "/status"):
                self._send(200, status_page(service.status()), "text/html; charset=utf-8")
            else:
                self._send(404, "not found\n", "text/plain")

        def _send(self, code: int, body: str, kind: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header(
                "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"
            )
            self.end_headers()
            self.wfile.write(data)

    hc = service.config.http
    try:
        server = ThreadingHTTPServer((hc.host, hc.port), Handler)
    except OSError as exc:
        raise ConfigError(
            f"cannot open the HTTP port {hc.host}:{hc.port}: {exc.strerror or exc}",
            hint="choose another [http] port, or 0 to turn the pages off",
        ) from None
    server.daemon_threads = True
    Thread(target=server.serve_forever, name="edgevcf-http", daemon=True).start()
    return server


def status_page(s: dict[str, Any]) -> str:
    """The status page (plain HTML, refreshes itself every 5 s, no script)."""
    e = html.escape
    jobs = "".join(f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in s["jobs"].items())
    dests = (
        "".join(
            f"<tr><td>{e(n)}</td><td>{d['confirmed']}</td><td>{d['failures']}</td>"
            f"<td>{e(d['last_error']) or '-'}</td></tr>"
            for n, d in s["destinations"].items()
        )
        or "<tr><td colspan=4>none configured (results go to the result log)</td></tr>"
    )
    rows = "".join(_row(r) for r in s["recent"]) or "<tr><td colspan=6>no films yet</td></tr>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>edgevcf serve: {e(s["ae_title"])}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}</style></head>
<body><h1>edgevcf serve: {e(s["ae_title"])}</h1>
<p id="model">Model <b>{e(s["backbone"])}</b> {e(s["precision"])} on {e(s["runtime"])},
threshold {s["threshold"]:.4f}<br>bundle id <code id="bundle">{e(s["model_id"])}</code>
{"<br>" + e(s["site_calibration"]) if s.get("site_calibration") else ""}</p>
<p id="totals">received {s["received"]}, refused {s["refused"]}, scoring queue
{s["scoring_queue"]}, quarantined {s.get("quarantined", 0)}, scoring workers alive
{sum(w["alive"] for w in s.get("workers", []))} of {len(s.get("workers", []))},
up {s["uptime_s"]:.0f} s</p>
<h2>Jobs</h2><table id="jobs"><tr><th>state</th><th>jobs</th></tr>{jobs}</table>
<h2>Destinations</h2><table id="destinations"><tr><th>destination</th><th>confirmed</th>
<th>failures in a row</th><th>last error</th></tr>{dests}</table>
{_watch(s.get("watch"))}
{_shadow(s.get("shadow"))}
<h2>Last results</h2><table id="recent"><tr><th>film (SHA-256 of its UID)</th><th>state</th>
<th>status</th><th>decision</th><th>P(fresh)</th><th>time</th></tr>{rows}</table>
</body></html>
"""


def _spark(values: list[Any], ref: float | None) -> str:
    """A small SVG line of a signal's last periods, its reference dashed."""
    pts = [(i, float(v)) for i, v in enumerate(values) if isinstance(v, int | float)]
    if len(pts) < 2:
        return "-"
    ys = [y for _, y in pts] + ([ref] if ref is not None else [])
    lo, hi = min(ys), max(ys)
    span = (hi - lo) or 1.0
    w, h = 160, 32

    def xy(i: float, y: float) -> str:
        return f"{i * w / max(1, len(values) - 1):.1f},{h - 2 - (y - lo) / span * (h - 4):.1f}"

    line = " ".join(xy(i, y) for i, y in pts)
    dash = ""
    if ref is not None:
        y = xy(0, ref).split(",")[1]
        dash = f'<line x1="0" x2="{w}" y1="{y}" y2="{y}" stroke="#999" stroke-dasharray="3,3"/>'
    return (f'<svg width="{w}" height="{h}" role="img">{dash}'
            f'<polyline fill="none" stroke="#236" points="{line}"/></svg>')  # fmt: skip


def _watch(w: dict[str, Any] | None) -> str:
    """The drift watch: reference, each signal's chart and CUSUM, the alarms of the window."""
    if w is None:
        return "<h2>Drift watch</h2><p>off ([watch] enabled = false)</p>"
    e = html.escape

    def num(v: Any, f: str = ".3f") -> str:
        return "-" if v is None else format(v, f)

    rows = "".join(
        f"<tr><td>{e(name)}</td><td>{num(v['reference'])}</td>"
        f"<td>{_spark(v['history'], v['reference'])}</td><td>{num(v['upper'], '.2f')} / "
        f"{num(v['lower'], '.2f')} of {num(v['h'], '.2f')}</td></tr>"
        for name, v in w["signals"].items()
    )
    alarms = (
        "".join(
            f"<tr><td>{e(a['signal'])}</td><td>{e(a['direction'])}</td><td>{e(a['began'])}</td>"
            f"<td>{e(a['raised'])}</td></tr>"
            for a in w["active"]
        )
        or "<tr><td colspan=4>none</td></tr>"
    )
    return (
        f'<h2>Drift watch</h2><p id="watch">per {e(w["period"])}; reference: '
        f"{e(w['reference'])}; {w['open_films']} film(s) in the open period</p>"
        '<table id="signals"><tr><th>signal</th><th>reference</th><th>last periods</th>'
        f"<th>CUSUM up / down of h</th></tr>{rows}</table>"
        '<table id="alarms"><tr><th>alarm</th><th>direction</th><th>began</th><th>raised</th>'
        f"</tr>{alarms}</table>"
    )


def _shadow(c: dict[str, Any] | None) -> str:
    """Shadow mode: the candidate's decisions against the served bundle's, live."""
    if c is None:
        return ""
    e = html.escape
    head = (f'<h2>Shadow candidate</h2><p id="shadow">candidate <code>{e(c["candidate"][:16])}'
            f"</code> beside <code>{e(c['primary'][:16])}</code>: {c['films']} film(s) "
            f"compared, {c['unpaired']} not assessed by one of them</p>")  # fmt: skip
    if not c["films"]:
        return head
    k = c["kappa"]["value"]
    d = c["difference"]
    return head + (
        '<table id="shadow-stats"><tr><th>agreement</th><th>Cohen\'s kappa</th>'
        "<th>positive rate served / candidate</th><th>difference (95 % CI)</th>"
        "<th>McNemar p (exact)</th></tr>"
        f"<tr><td>{c['agreement']['value']:.3f}</td><td>{'-' if k is None else f'{k:.3f}'}</td>"
        f"<td>{c['positive_rate']['primary']:.3f} / {c['positive_rate']['candidate']:.3f}</td>"
        f"<td>{d['value']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f})</td>"
        f"<td>{c['mcnemar_p']:.3g}</td></tr></table>"
    )


def _row(r: dict[str, Any]) -> str:
    e = html.escape
    p = "-" if r["probability"] is None else f"{r['probability']:.3f}"
    when = dt.datetime.fromtimestamp(r["updated_at"]).strftime("%H:%M:%S")
    return (
        f"<tr><td><code>{e(r['uid_sha256'])}</code></td><td>{e(r['state'])}</td>"
        f"<td>{e(r['status'] or '-')}</td><td>{e(r['decision'])}</td><td>{p}</td>"
        f"<td>{when}</td></tr>"
    )


__all__ = ["start_http", "status_page"]
