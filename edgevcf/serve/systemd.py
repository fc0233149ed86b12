"""systemd's service protocol, in the standard library: ``READY=1``, ``STOPPING=1`` and a
watchdog fed only while the node is healthy.

Under a ``Type=notify`` unit with ``WatchdogSec=``, systemd restarts the node when the
``WATCHDOG=1`` messages stop: the node sends them from its own thread only while
:meth:`Service.healthy` holds (scoring slots and outbox alive, scoring not stalled), so a node
that stopped making progress is restarted by systemd, and one whose whole process froze is too
(nothing sends). Outside systemd (no ``NOTIFY_SOCKET``) every call here does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd; False when not run by systemd."""
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if not addr:
        return False
    if addr.startswith("@"):  # an abstract socket
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError as exc:
        log.debug("sd_notify %r failed: %s", state, exc)
        return False
    return True


def watchdog_seconds() -> float | None:
    """The watchdog period systemd asks for (``WATCHDOG_USEC``, for this process), or None."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6


class Watchdog:
    """Sends ``WATCHDOG=1`` every half period while ``healthy()`` says so."""

    def __init__(
        self,
        period_s: float,
        healthy: Callable[[], bool],
        health: Callable[[], dict[str, Any]],
    ) -> None:
        self.period_s = period_s
        self._healthy = healthy
        self._health = health
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgevcf-watchdog", daemon=True)

    @classmethod
    def start_if_asked(
        cls, healthy: Callable[[], bool], health: Callable[[], dict[str, Any]]
    ) -> Watchdog | None:
        """A running watchdog when systemd asked for one, else None."""
        period = watchdog_seconds()
        if period is None:
            return None
        dog = cls(period, healthy, health)
        dog._thread.start()
        return dog

    def _run(self) -> None:
        said = ""
        while not self._stop.wait(self.period_s / 2):
            if self._healthy():
                notify("WATCHDOG=1")
                said = ""
                continue
            reason = str(self._health().get("reason", "unhealthy"))
            if reason != said:  # once per reason: systemd restarts the node soon
                log.error("not feeding the systemd watchdog: %s", reason)
                notify(f"STATUS=unhealthy: {reason}"[:200])
                said = reason

    def stop(self) -> None:
        self._stop.set()


__all__ = ["Watchdog", "notify", "watchdog_seconds"]
