"""The job journal: what happened to every film the cart accepted, durable across ``kill -9``.

A film moves ``received -> scored -> written -> forwarded`` (or ends ``failed`` with a reason).
Each step is one SQLite transaction in WAL mode with ``synchronous=FULL``: once a call returns,
the step survives a crash or power loss, so the success status goes back to the modality only
after :meth:`Journal.receive` returned, and a restart resumes every job that is not finished
(:meth:`Journal.unfinished`). The key is the SHA-256 of the SOP Instance UID: a film sent twice is
one job (idempotence), and the journal — like logs and metrics — holds no identifier in clear.

Scoring tries are counted *before* a film goes to a worker (:meth:`Journal.begin_try`), so a
film that hangs or kills its worker — or the whole node — is tried a bounded number of times,
across restarts too, then **quarantined**: its film kept aside for the site, its job answered
with an "undetermined" result and never scored again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevcf.errors import ConfigError

#: The order a job moves in; ``failed`` ends a job from any state before ``forwarded``.
STATES = ("received", "scored", "written", "forwarded")
FAILED = "failed"
SCHEMA_VERSION = 2  # 2: scoring tries and quarantine


def uid_key(sop_instance_uid: str) -> str:
    """The journal key (and the name logs may show): SHA-256 of the UID, hex."""
    return hashlib.sha256(sop_instance_uid.strip().encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True)
class Job:
    """One film's row."""

    key: str
    state: str
    spool: str
    result: dict[str, Any] | None
    sr: str | None
    reason: str
    attempts: int
    received_at: float
    updated_at: float
    tries: int = 0  # scoring tries begun (forwarding attempts are ``attempts``)
    quarantined: bool = False


class Journal:
    """The SQLite job journal (thread-safe: one connection behind a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (key TEXT PRIMARY KEY, state TEXT NOT NULL, "
            "spool TEXT NOT NULL, result TEXT, sr TEXT, reason TEXT NOT NULL DEFAULT '', "
            "attempts INTEGER NOT NULL DEFAULT 0, received_at REAL NOT NULL, "
            "updated_at REAL NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS deliveries (key TEXT NOT NULL, destination TEXT NOT NULL, "
            "at REAL NOT NULL, PRIMARY KEY (key, destination))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        # shadow mode: each film's candidate result beside the primary's, keyed for labels that
        # come later by salted hashes of its SOP Instance UID and accession number (no clear id)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS shadow_films (key TEXT PRIMARY KEY, candidate TEXT "
            "NOT NULL, uid_hash TEXT NOT NULL, accession_hash TEXT NOT NULL, levels TEXT NOT "
            "NULL, primary_result TEXT NOT NULL, result TEXT NOT NULL, at REAL NOT NULL)"
        )
        # the drift watch: the open period's film records (no identifier) and its state in meta
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS watch_films (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "period TEXT NOT NULL, record TEXT NOT NULL)"
        )
        row = self._db.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise ConfigError(
                f"journal {self.path} has schema {row[0]}, newer than this edgevcf's "
                f"({SCHEMA_VERSION})",
                hint="run the edgevcf version that wrote it, or move the journal aside",
            )
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
        for name in ("tries", "quarantined"):  # schema 1 -> 2: a journal of an older node
            if name not in columns:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} INTEGER NOT NULL DEFAULT 0")
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        """Close the database (every step is already on disk)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def receive(self, sop_instance_uid: str, spool: str | Path) -> bool:
        """Record a film that is on disk (``spool``, written and fsynced by the caller).

        Returns:
            True for a new film; False when the same SOP Instance UID is already journaled (a
            resend: the modality gets success again, and no second result is made).
        """
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO jobs (key, state, spool, received_at, updated_at) "
                "VALUES (?, 'received', ?, ?, ?)",
                (uid_key(sop_instance_uid), str(spool), now, now),
            )
            return cur.rowcount == 1

    def advance(self, key: str, state: str, **fields: Any) -> None:
        """Move job ``key`` one step on (``result`` = a JSON-able dict, ``sr`` = a path).

        Raises:
            ConfigError: an unknown state, or a step out of order (a bug in the caller).
        """
        if state not in STATES:
            raise ConfigError(f"unknown job state {state!r}", hint=f"one of {', '.join(STATES)}")
        with self._lock:
            row = self._db.execute("SELECT state FROM jobs WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] == FAILED or STATES.index(state) != STATES.index(row[0]) + 1:
                raise ConfigError(
                    f"job {key[:12]}: cannot go from {row[0] if row else 'nothing'} to {state}"
                )
            sets, args = ["state = ?", "updated_at = ?"], [state, time.time()]
            if "result" in fields:
                sets.append("result = ?")
                args.append(json.dumps(fields["result"], sort_keys=True))
            if "sr" in fields:
                sets.append("sr = ?")
                args.append(str(fields["sr"]))
            self._db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE key = ?", (*args, key))

    def attempt(self, key: str) -> int:
        """Count one (failed) forwarding attempt; returns the count so far."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET attempts = attempts + 1, updated_at = ? WHERE key = ?",
                (time.time(), key),
            )
            row = self._db.execute("SELECT attempts FROM jobs WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def begin_try(self, key: str) -> int:
        """Count one scoring try of ``key`` before it is handed to a worker; the count so far."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET tries = tries + 1, updated_at = ? WHERE key = ?",
                (time.time(), key),
            )
            row = self._db.execute("SELECT tries FROM jobs WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def undo_try(self, key: str) -> None:
        """Un-count a try the node itself abandoned (it stopped): not the film's fault."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET tries = MAX(tries - 1, 0) WHERE key = ? AND state = 'received'",
                (key,),
            )

    def note(self, key: str, reason: str) -> None:
        """Keep why the last scoring try of ``key`` failed (said if it ends quarantined)."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET reason = ?, updated_at = ? WHERE key = ?",
                (reason[:500], time.time(), key),
            )

    def quarantine(self, key: str, spool: str | Path, reason: str) -> None:
        """Mark ``key`` quarantined: its film now lives at ``spool`` (kept for the site)."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET quarantined = 1, spool = ?, reason = ?, updated_at = ? "
                "WHERE key = ?",
                (str(spool), reason[:500], time.time(), key),
            )

    def quarantined(self, limit: int = 1000) -> list[Job]:
        """Quarantined jobs, newest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE quarantined = 1 "
                "ORDER BY updated_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [_job(r) for r in rows]

    def fail(self, key: str, reason: str) -> None:
        """End a job that cannot go on (its reason is stored; it holds no patient data)."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state = ?, reason = ?, updated_at = ? WHERE key = ? "
                "AND state != 'forwarded'",
                (FAILED, reason[:500], time.time(), key),
            )

    def get(self, key: str) -> Job | None:
        """One job, or None."""
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE key = ?", (key,)).fetchone()
        return _job(row) if row else None

    def unfinished(self) -> list[Job]:
        """Jobs a restart must resume, oldest first (not forwarded, not failed)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state NOT IN ('forwarded', 'failed') "
                "ORDER BY received_at"
            ).fetchall()
        return [_job(r) for r in rows]

    def in_state(self, state: str, limit: int = 1000) -> list[Job]:
        """Jobs in ``state``, oldest first (the outbox reads ``written``)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = ? ORDER BY received_at LIMIT ?",
                (state, limit),
            ).fetchall()
        return [_job(r) for r in rows]

    def delivered(self, key: str, destination: str) -> None:
        """Record that ``destination`` confirmed the result of ``key`` (once per pair)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?)", (key, destination, time.time())
            )

    def deliveries(self, key: str) -> set[str]:
        """The destinations that already confirmed the result of ``key``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT destination FROM deliveries WHERE key = ?", (key,)
            ).fetchall()
        return {str(r[0]) for r in rows}

    def finished_before(self, when: float, limit: int = 1000) -> list[Job]:
        """Forwarded or failed jobs last changed before ``when`` (their files may be deleted)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state IN ('forwarded', 'failed') "
                "AND updated_at < ? ORDER BY updated_at LIMIT ?",
                (when, limit),
            ).fetchall()
        return [_job(r) for r in rows]

    def recent(self, limit: int = 20) -> list[Job]:
        """The last jobs changed, newest first (for the status page)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs ORDER BY updated_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Jobs per state (for metrics and the status page)."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        out = dict.fromkeys((*STATES, FAILED), 0)
        out.update({str(s): int(n) for s, n in rows})
        return out

    def salt(self) -> str:
        """This journal's secret salt (made once): the key of the hashes a label file is joined
        on (:func:`salted`), so a copied journal does not reveal which UIDs it holds."""
        import secrets

        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('salt', ?)",
                             (secrets.token_hex(32),))  # fmt: skip
            row = self._db.execute("SELECT v FROM meta WHERE k = 'salt'").fetchone()
        return str(row[0])

    def shadow_add(self, key: str, candidate: str, film: dict[str, Any],
                   primary: dict[str, Any], result: dict[str, Any],
                   state: dict[str, Any]) -> bool:  # fmt: skip
        """Keep the candidate's result for film ``key`` (``film``: its salted ``uid_hash`` and
        ``accession_hash`` and subgroup ``levels``) and the shadow tally ``state``, in one
        transaction; False (nothing changed) when this film was already compared."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO shadow_films VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, candidate, film["uid_hash"], film["accession_hash"],
                     json.dumps(film["levels"], sort_keys=True),
                     json.dumps(primary, sort_keys=True),
                     json.dumps(result, sort_keys=True), time.time()),
                )  # fmt: skip
                if cur.rowcount == 1:
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES ('shadow', ?)",
                                     (json.dumps(state),))  # fmt: skip
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return cur.rowcount == 1

    def shadow_state(self) -> dict[str, Any] | None:
        """The shadow tally as last kept (None: never)."""
        with self._lock:
            row = self._db.execute("SELECT v FROM meta WHERE k = 'shadow'").fetchone()
        return json.loads(row[0]) if row else None

    def shadow_results(self, candidate: str | None = None) -> list[dict[str, Any]]:
        """Every film's pair of results (salted hashes, levels, when), oldest first."""
        where = "WHERE candidate = ? " if candidate else ""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, candidate, uid_hash, accession_hash, levels, primary_result, "
                f"result, at FROM shadow_films {where}ORDER BY at",
                (candidate,) if candidate else (),
            ).fetchall()
        return [{"key": k, "candidate": c, "uid_hash": u, "accession_hash": a,
                 "levels": json.loads(lv), "primary": json.loads(p), "result": json.loads(r),
                 "at": float(t)} for k, c, u, a, lv, p, r, t in rows]  # fmt: skip

    def watch_add(self, period: str, record: dict[str, Any]) -> None:
        """Keep one film's drift record (no identifier) in the open period ``period``."""
        with self._lock:
            self._db.execute("INSERT INTO watch_films (period, record) VALUES (?, ?)",
                             (period, json.dumps(record, sort_keys=True)))  # fmt: skip

    def watch_open(self) -> list[tuple[str, dict[str, Any]]]:
        """The records not yet judged, in arrival order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT period, record FROM watch_films ORDER BY seq"
            ).fetchall()
        return [(str(p), json.loads(r)) for p, r in rows]

    def watch_close(self, periods: list[str], state: dict[str, Any]) -> None:
        """Drop the records of ``periods`` (now judged) and keep the watch's new ``state``, in
        one transaction: a crash leaves either both or neither."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM watch_films WHERE period = ?",
                                     [(p,) for p in periods])  # fmt: skip
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('watch', ?)",
                                 (json.dumps(state),))  # fmt: skip
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def watch_state(self) -> dict[str, Any] | None:
        """The watch's state as last closed (None: never)."""
        with self._lock:
            row = self._db.execute("SELECT v FROM meta WHERE k = 'watch'").fetchone()
        return json.loads(row[0]) if row else None

    def count_quarantined(self) -> int:
        """How many films were quarantined (ever: they stay until the site removes them)."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM jobs WHERE quarantined = 1").fetchone()
        return int(row[0])


def salted(salt: str, value: str) -> str:
    """HMAC-SHA256 of an identifier under a journal's salt ("" for an empty value)."""
    import hmac

    value = value.strip()
    if not value:
        return ""
    return hmac.new(salt.encode(), value.encode("utf-8", "replace"), hashlib.sha256).hexdigest()


_COLUMNS = (
    "key, state, spool, result, sr, reason, attempts, received_at, updated_at, tries, quarantined"
)


def _job(row: tuple[Any, ...]) -> Job:
    key, state, spool, result, sr, reason, attempts, received, updated, tries, quar = row
    return Job(
        key, state, spool, json.loads(result) if result else None, sr, reason, int(attempts),
        float(received), float(updated), int(tries), bool(quar),
    )  # fmt: skip


__all__ = ["FAILED", "STATES", "Job", "Journal", "salted", "uid_key"]
