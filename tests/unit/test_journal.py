"""The job journal: idempotent per SOP Instance UID, steps in order, and nothing lost to kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgevcf.errors import ConfigError
from edgevcf.serve.journal import FAILED, Journal, uid_key

UID = "1.2.826.0.1.3680043.8.498.1"


def test_a_film_sent_twice_is_one_job(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        assert j.receive(UID, tmp_path / "a.dcm") is True
        assert j.receive(UID, tmp_path / "b.dcm") is False
        assert j.counts()["received"] == 1
        assert j.get(uid_key(UID)).spool == str(tmp_path / "a.dcm")  # type: ignore[union-attr]


def test_steps_go_in_order_and_resume_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    keys = [uid_key(f"{UID}.{i}") for i in range(4)]
    for i in range(4):
        j.receive(f"{UID}.{i}", f"s{i}")
    j.advance(keys[0], "scored", result={"p": 0.8, "decision": True})
    j.advance(keys[0], "written", sr="sr0.dcm")
    j.advance(keys[0], "forwarded")
    j.advance(keys[1], "scored", result={"p": 0.1, "decision": False})
    j.fail(keys[2], "unreadable: truncated file")
    with pytest.raises(ConfigError, match="cannot go from received to written"):
        j.advance(keys[3], "written")
    with pytest.raises(ConfigError, match="cannot go from failed"):
        j.advance(keys[2], "scored")
    j.close()  # as if the service stopped here
    with Journal(path) as again:
        left = again.unfinished()
        assert [job.key for job in left] == [keys[1], keys[3]]
        assert left[0].state == "scored" and left[0].result == {"decision": False, "p": 0.1}
        assert again.get(keys[2]).state == FAILED  # type: ignore[union-attr]
        assert again.counts() == {
            "received": 1, "scored": 1, "written": 0, "forwarded": 1, "failed": 1
        }  # fmt: skip


def test_wal_and_full_sync(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite"):
        db = sqlite3.connect(tmp_path / "j.sqlite")
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()


def test_no_uid_in_clear(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        j.receive(UID, "spool/x.dcm")
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert UID.encode() not in data and uid_key(UID).encode() in data


def test_threads_share_one_journal(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:

        def work(t: int) -> None:
            for i in range(50):
                uid = f"{UID}.{t}.{i}"
                assert j.receive(uid, "s")
                j.advance(uid_key(uid), "scored", result={})

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert j.counts()["scored"] == 200


def test_every_receipt_returned_survives_kill_9(tmp_path: Path) -> None:
    """A child journals films and prints each UID once receive() returned; SIGKILL mid-stream;
    every printed UID is in the journal afterwards (what the modality was told it has)."""
    path = tmp_path / "j.sqlite"
    code = (
        "import sys\n"
        "from edgevcf.serve.journal import Journal\n"
        f"j = Journal({str(path)!r})\n"
        "i = 0\n"
        "while True:\n"
        "    uid = f'1.2.3.{i}'\n"
        "    j.receive(uid, 's')\n"
        "    print(uid, flush=True)\n"
        "    i += 1\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked = []
    deadline = time.monotonic() + 60
    while len(acked) < 50 and time.monotonic() < deadline:
        acked.append(proc.stdout.readline().strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with Journal(path) as j:
        for uid in acked:
            assert j.get(uid_key(uid)) is not None, uid


def test_tries_survive_reopening_and_quarantine_keeps_the_film_aside(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    key = uid_key(UID)
    with Journal(path) as j:
        j.receive(UID, tmp_path / "films" / "a.dcm")
        assert j.begin_try(key) == 1
        j.undo_try(key)  # abandoned by a stopping node: not counted
        assert j.begin_try(key) == 1
        j.note(key, "the scoring worker died (killed by SIGABRT)")
    with Journal(path) as j:  # as after kill -9: the try is still counted
        job = j.get(key)
        assert job is not None and job.tries == 1 and "SIGABRT" in job.reason
        assert j.begin_try(key) == 2
        j.quarantine(key, tmp_path / "quarantine" / "a.dcm", "died twice")
        (q,) = j.quarantined()
        assert q.quarantined and q.spool.endswith("quarantine/a.dcm") and q.state == "received"
        assert j.count_quarantined() == 1


def test_a_schema_1_journal_is_migrated_in_place(tmp_path: Path) -> None:
    """A journal written before scoring tries existed opens, keeps its jobs, gains the columns."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE jobs (key TEXT PRIMARY KEY, state TEXT NOT NULL, spool TEXT NOT NULL, "
        "result TEXT, sr TEXT, reason TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL "
        "DEFAULT 0, received_at REAL NOT NULL, updated_at REAL NOT NULL)"
    )
    db.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT)")
    db.execute("INSERT INTO meta VALUES ('schema', '1')")
    db.execute("INSERT INTO jobs (key, state, spool, received_at, updated_at) "
               "VALUES (?, 'received', 's.dcm', 1.0, 1.0)", (uid_key(UID),))  # fmt: skip
    db.commit()
    db.close()
    with Journal(path) as j:
        (job,) = j.unfinished()
        assert job.tries == 0 and not job.quarantined
        assert j.begin_try(job.key) == 1
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()[0] == "2"
