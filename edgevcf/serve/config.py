"""``serve.toml``: how the cart's DICOM node is set up, checked as strictly as the profiles.

Unknown keys, wrong types and unsafe combinations are a :class:`~edgevcf.errors.ConfigError` that
names the key, before a port is opened: a typo in an allow-list must not open the node to anyone.
Relative paths are relative to the config file. Example::

    [listen]
    ae_title = "EDGEVCF"
    port = 11112
    host = "0.0.0.0"          # default 127.0.0.1: nothing is exposed until configured

    [[allowed]]               # who may send films: AE title AND host, both must match
    ae_title = "CART_DX1"
    host = "10.1.2.3"

    [[destinations]]          # where the SRs go (the PACS)
    ae_title = "PACS"
    host = "10.1.2.10"
    port = 104

    [storage]
    spool = "/var/lib/edgevcf/spool"
    journal = "/var/lib/edgevcf/journal.sqlite"

    [trust]                   # run only bundles signed by these keys (edgevcf keys new)
    keys = ["/etc/edgevcf/trust"]
    revoked = []

    [model]                   # the bundle to serve (a BUNDLE argument overrides it)
    bundle = "/var/lib/edgevcf/bundles/current"

    [scoring]                 # worker processes, each film's time limit, tries before quarantine
    workers = 2
    film_timeout_s = 60
    max_tries = 2
    stall_s = 180

    [watch]                   # the drift watch (docs/serve.md, "Over time on the cart")
    period = "day"            # or "films:200": a block of 200 films
    burn_in = 28              # periods of this cart's own stream as the reference, when the
    burn_in_films = 1000      # bundle carries no site validation
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevcf.errors import ConfigError
from edgevcf.tomlconf import check_table, read_toml


@dataclass(frozen=True)
class Listen:
    """The node's own AE and its limits."""

    ae_title: str = "EDGEVCF"
    port: int = 11112  # 0: any free port (said at start)
    host: str = "127.0.0.1"
    max_pdu: int = 65536
    max_dataset_mb: float = 200.0
    max_associations: int = 8


@dataclass(frozen=True)
class Tls:
    """TLS for the listening port (on when ``cert`` is set); mutual TLS with ``ca`` + required."""

    cert: str = ""
    key: str = ""
    ca: str = ""
    require_client_cert: bool = False


@dataclass(frozen=True)
class Storage:
    """Where received films and the job journal live."""

    spool: str = "spool"
    journal: str = "journal.sqlite"
    reserve_mb: float = 512.0
    retention_hours: float = 0.0  # keep forwarded films this long (0: delete at once)


@dataclass(frozen=True)
class Forward:
    """Retry of the outbox: exponential back-off between these bounds, never giving up."""

    retry_initial_s: float = 2.0
    retry_max_s: float = 300.0


@dataclass(frozen=True)
class Http:
    """Health, metrics and the status page (port 0: off)."""

    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class Scoring:
    """The scoring workers (workers 0: one per CPU core).

    ``isolation = "process"`` scores in supervised worker processes: each film has
    ``film_timeout_s``; a worker that overruns it or dies is replaced and the film tried again,
    up to ``max_tries`` in all (across restarts), then quarantined with an "undetermined"
    result. ``/healthz`` fails when work waits and no worker has made progress for ``stall_s``.
    ``"thread"`` scores in the node's own threads (no time limit; for measurement).
    """

    workers: int = 0
    backend: str = "auto"
    isolation: str = "process"
    film_timeout_s: float = 60.0
    max_tries: int = 2
    stall_s: float = 180.0


@dataclass(frozen=True)
class Watch:
    """The drift watch (:mod:`edgevcf.watch.drift`): ``period`` is ``"day"`` or ``"films:N"``
    (a block of N films); the reference is the site validation the bundle carries, else the
    first ``burn_in`` periods (and at least ``burn_in_films`` films) of this cart's own stream;
    ``films_per_period`` is the volume the charts are tuned for when the reference comes from
    the bundle (a burn-in measures it)."""

    enabled: bool = True
    period: str = "day"
    burn_in: int = 28
    burn_in_films: int = 1000
    films_per_period: float = 40.0
    window: int = 14
    alpha: float = 0.01


@dataclass(frozen=True)
class Shadow:
    """A candidate bundle scored beside the served one on every accepted film, after it, under
    the same trust rules; its decisions go to the journal and the shadow statistics, never to a
    destination (``edgevcf shadow report``, docs/serve.md)."""

    bundle: str = ""
    # optional: the candidate's SRs, marked NOT FOR CLINICAL USE, to one QA node (best effort)
    qa_ae_title: str = ""
    qa_host: str = ""
    qa_port: int = 0


@dataclass(frozen=True)
class Model:
    """What the node serves: a bundle folder (so a service unit names no model path)."""

    bundle: str = ""
    deployment: str = ""  # or: the newest valid signed promotion record here (edgevcf promote)


@dataclass(frozen=True)
class TrustKeys:
    """Run only bundles signed by these public keys (files, or folders of ``*.pub``); the key
    ids in ``revoked`` are refused whatever the list says. Empty ``keys``: origin not checked."""

    keys: tuple[str, ...] = ()
    revoked: tuple[str, ...] = ()


@dataclass(frozen=True)
class Peer:
    """A modality allowed to send (an ``[[allowed]]`` entry)."""

    ae_title: str
    host: str


@dataclass(frozen=True)
class Destination:
    """A node the results are sent to (a ``[[destinations]]`` entry)."""

    ae_title: str
    host: str
    port: int = 104
    tls: bool = False


@dataclass(frozen=True)
class ServeConfig:
    """A whole ``serve.toml``."""

    listen: Listen = field(default_factory=Listen)
    tls: Tls = field(default_factory=Tls)
    storage: Storage = field(default_factory=Storage)
    forward: Forward = field(default_factory=Forward)
    http: Http = field(default_factory=Http)
    scoring: Scoring = field(default_factory=Scoring)
    trust: TrustKeys = field(default_factory=TrustKeys)
    model: Model = field(default_factory=Model)
    watch: Watch = field(default_factory=Watch)
    shadow: Shadow = field(default_factory=Shadow)
    allowed: tuple[Peer, ...] = ()
    destinations: tuple[Destination, ...] = ()
    source: str = "defaults"


ISOLATIONS = ("process", "thread")

TABLES: dict[str, type] = {
    "listen": Listen, "tls": Tls, "storage": Storage, "forward": Forward, "http": Http,
    "scoring": Scoring, "trust": TrustKeys, "model": Model, "watch": Watch,
    "shadow": Shadow,
}  # fmt: skip
LISTS: dict[str, type] = {"allowed": Peer, "destinations": Destination}


def load_serve_config(path: str | Path) -> ServeConfig:
    """Read and check a ``serve.toml`` (relative paths resolved against its folder)."""
    p = Path(path)
    return parse_serve_config(read_toml(p, "serve config"), str(p), base=p.parent)


def parse_serve_config(data: dict[str, Any], source: str, base: Path | None = None) -> ServeConfig:
    """Check a parsed ``serve.toml``; see the module docstring."""
    unknown = sorted(set(data) - set(TABLES) - set(LISTS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown table(s) {', '.join(unknown)}",
            hint=f"valid tables: {', '.join([*TABLES, *LISTS])}",
        )
    built: dict[str, Any] = {}
    for name, cls in TABLES.items():
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        built[name] = check_table(cls, raw, source, name)
    for name, cls in LISTS.items():
        raw = data.get(name, [])
        if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
            raise ConfigError(f"{source}: {name} must be an array of tables ([[{name}]])")
        entries = []
        for i, x in enumerate(raw):
            required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
            missing = [k for k in required if k not in x]
            if missing:
                raise ConfigError(f"{source}: [[{name}]] #{i + 1} needs {', '.join(missing)}")
            entries.append(check_table(cls, x, source, f"[{name}] #{i + 1}"))
        built[name] = tuple(entries)
    if base is not None:
        st = built["storage"]
        built["storage"] = dataclasses.replace(
            st, spool=str(base / st.spool), journal=str(base / st.journal)
        )
        tk = built["trust"]
        built["trust"] = dataclasses.replace(tk, keys=tuple(str(base / k) for k in tk.keys))
        md = built["model"]
        if md.bundle:
            built["model"] = md = dataclasses.replace(md, bundle=str(base / md.bundle))
        if md.deployment:
            built["model"] = dataclasses.replace(md, deployment=str(base / md.deployment))
        sh = built["shadow"]
        if sh.bundle:
            built["shadow"] = dataclasses.replace(sh, bundle=str(base / sh.bundle))
        t = built["tls"]
        built["tls"] = dataclasses.replace(
            t, **{k: str(base / getattr(t, k)) for k in ("cert", "key", "ca") if getattr(t, k)}
        )
    cfg = ServeConfig(**built, source=source)
    _check_values(cfg)
    return cfg


def _ae_problem(title: str, where: str) -> str | None:
    """DICOM AE titles: 1-16 characters of the default repertoire, no backslash, not blank."""
    if not title.strip() or len(title) > 16 or "\\" in title or not title.isascii():
        return f"{where} {title!r} is not an AE title (1-16 ASCII characters, no backslash)"
    if any(ord(c) < 32 for c in title):
        return f"{where} {title!r} has control characters"
    return None


def _check_values(c: ServeConfig) -> None:
    titles = [("[listen] ae_title", c.listen.ae_title)]
    titles += [(f"[[allowed]] #{i + 1} ae_title", a.ae_title) for i, a in enumerate(c.allowed)]
    titles += [
        (f"[[destinations]] #{i + 1} ae_title", d.ae_title) for i, d in enumerate(c.destinations)
    ]
    problems = [p for where, title in titles if (p := _ae_problem(title, where))]
    for where, port, zero_ok in (
        ("[listen] port", c.listen.port, True),
        ("[http] port", c.http.port, True),
        *((f"[[destinations]] #{i + 1} port", d.port, False) for i, d in enumerate(c.destinations)),
    ):
        if not (zero_ok and port == 0) and not 1 <= port <= 65535:
            problems.append(f"{where} must be 1..65535{' (or 0)' if zero_ok else ''}")
    if not c.allowed:
        problems.append("[[allowed]] is empty: no modality could send (list AE title and host)")
    if any(not a.host.strip() or "*" in a.host for a in c.allowed):
        problems.append("[[allowed]] hosts must be exact addresses or names (no wildcards)")
    if c.listen.max_pdu and not 4096 <= c.listen.max_pdu <= 2**24:
        problems.append("[listen] max_pdu must be 4096..16777216 (or 0: unlimited)")
    if c.listen.max_dataset_mb <= 0 or c.listen.max_associations < 1:
        problems.append("[listen] max_dataset_mb must be > 0 and max_associations >= 1")
    if bool(c.tls.cert) != bool(c.tls.key):
        problems.append("[tls] cert and key go together")
    if c.tls.require_client_cert and not (c.tls.cert and c.tls.ca):
        problems.append("[tls] require_client_cert needs cert, key and the site's ca")
    if c.storage.reserve_mb < 0 or c.storage.retention_hours < 0:
        problems.append("[storage] reserve_mb and retention_hours must be >= 0")
    if not 0 < c.forward.retry_initial_s <= c.forward.retry_max_s:
        problems.append("[forward] need 0 < retry_initial_s <= retry_max_s")
    sc = c.scoring
    if sc.workers < 0:
        problems.append("[scoring] workers must be >= 0 (0: one per CPU core)")
    if sc.isolation not in ISOLATIONS:
        problems.append(f"[scoring] isolation must be one of {', '.join(ISOLATIONS)}")
    if sc.film_timeout_s <= 0 or sc.max_tries < 1:
        problems.append("[scoring] need film_timeout_s > 0 and max_tries >= 1")
    if sc.stall_s <= sc.film_timeout_s:
        problems.append(
            "[scoring] stall_s must be longer than film_timeout_s (a film may take that long)"
        )
    sh = c.shadow
    if sh.qa_port and not (sh.qa_ae_title and sh.qa_host and sh.bundle):
        problems.append("[shadow] qa_port needs qa_ae_title, qa_host and a candidate bundle")
    qa = (sh.qa_host, sh.qa_port)
    if sh.qa_port and any((d.host, d.port) == qa for d in c.destinations):
        problems.append("[shadow] the QA node must not be a clinical destination")
    w = c.watch
    if w.period != "day" and not (
        w.period.startswith("films:") and w.period[6:].isdigit() and int(w.period[6:]) >= 10
    ):
        problems.append('[watch] period must be "day" or "films:N" with N >= 10')
    if w.burn_in < 1 or w.burn_in_films < 1 or w.window < 1 or w.films_per_period <= 0:
        problems.append("[watch] burn_in, burn_in_films, window and films_per_period must be > 0")
    if not 0 < w.alpha < 1:
        problems.append("[watch] alpha must be in (0, 1)")
    if problems:
        raise ConfigError(f"{c.source}: " + "; ".join(problems))


__all__ = ["Destination", "Peer", "ServeConfig", "load_serve_config", "parse_serve_config"]
