"""The DICOM side of the node: a Storage SCP (and C-ECHO) on pynetdicom, closed by default.

What is accepted is decided here, before a film reaches the spool:

* **Who**: an association is accepted only from a calling AE title *and* host pair on the
  allow-list, to our own AE title; anything else is rejected (permanent; calling or called AE
  title not recognised) and logged by reason only.
* **What**: the storage SOP classes a lateral spine film comes as (:data:`STORAGE_CLASSES`) in
  the transfer syntaxes this installation can decode (:func:`transfer_syntaxes`: compressed
  ones only when a permissively licensed decoder is installed). Anything else is refused at
  negotiation (the presentation context is rejected), so a sender knows before it sends.
* **How much**: the PDU size we announce, and a cap on the bytes of one data set (an association
  that exceeds it is aborted).

The C-STORE handler hands the encoded data set to :meth:`Receiver.store` (the service), which
answers with a DICOM status: 0x0000 only after the film is on disk and journaled.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgevcf.errors import ConfigError
from edgevcf.serve.config import ServeConfig

log = logging.getLogger(__name__)

#: Storage SOP classes accepted (single-frame projection radiographs and their captures).
STORAGE_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.12.2": "X-Ray Radiofluoroscopic Image Storage",
}
VERIFICATION = "1.2.840.10008.1.1"

#: Uncompressed syntaxes: always decodable (pydicom alone).
NATIVE_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
)
#: Compressed syntaxes, offered only when an installed pydicom plugin decodes them.
COMPRESSED_SYNTAXES = (
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, Process 14 SV1
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Process 14
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (8-bit)
    "1.2.840.10008.1.2.5",  # RLE Lossless
)

# DICOM statuses of C-STORE (PS3.4 B.2.3 and PS3.7 C.4.2)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122


def transfer_syntaxes() -> list[str]:
    """The syntaxes offered for images: native ones, then the compressed ones decodable here."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    usable = list(NATIVE_SYNTAXES)
    for ts in COMPRESSED_SYNTAXES:
        try:
            if get_decoder(UID(ts)).is_available:
                usable.append(ts)
        except NotImplementedError:
            continue
    return usable


@dataclass(frozen=True)
class Status:
    """A C-STORE answer: the status code and, for failures, a comment without patient data."""

    code: int
    comment: str = ""


def server_tls(config: ServeConfig) -> ssl.SSLContext | None:
    """The listening port's TLS context (TLS 1.2+, BCP 195), or None when TLS is off.

    Raises:
        ConfigError: a certificate, key or CA file cannot be read.
    """
    t = config.tls
    if not t.cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(t.cert, t.key)
        if t.ca:
            ctx.load_verify_locations(t.ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"[tls]: cannot load the certificate, key or CA: {exc}",
            hint="cert and key are PEM files of the node; ca the site's CA certificate (PEM)",
        ) from None
    if t.require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif t.ca:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_tls(config: ServeConfig, hostname: str) -> tuple[ssl.SSLContext, str]:
    """TLS for sending to a destination: the site's CA verifies it; our cert, when set, is sent."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.tls.ca or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.tls.cert:
        ctx.load_cert_chain(config.tls.cert, config.tls.key)
    return ctx, hostname


class Receiver:
    """The Storage SCP: association control and the C-ECHO / C-STORE handlers.

    ``store(data, sop_class, sop_instance, calling_ae)`` is the service's entry point: it gets
    the encoded data set (DICOM file format, meta included) and returns a :class:`Status`.
    """

    def __init__(
        self,
        config: ServeConfig,
        store: Callable[[bytes, str, str, str], Status],
        on_reject: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.config = config
        self.store = store
        self.on_reject = on_reject
        self.allowed = {(p.ae_title.strip(), p.host.strip()) for p in config.allowed}
        self.accepting = True
        self._server: Any = None
        self._received: dict[int, int] = {}
        self._lock = threading.Lock()
        self.max_dataset = int(config.listen.max_dataset_mb * 1e6)

    # -------------------------------------------------------------- lifecycle
    def start(self) -> tuple[str, int]:
        """Open the port (non-blocking); returns the address listened on."""
        from pynetdicom import AE, evt

        _quiet_pynetdicom()
        lc = self.config.listen
        ae = AE(ae_title=lc.ae_title)
        ae.maximum_pdu_size = lc.max_pdu
        ae.maximum_associations = lc.max_associations
        ae.require_called_aet = True
        ae.network_timeout = 60
        ae.acse_timeout = 30
        ae.dimse_timeout = 120
        syntaxes = transfer_syntaxes()
        for uid in STORAGE_CLASSES:
            ae.add_supported_context(uid, syntaxes)
        ae.add_supported_context(VERIFICATION, list(NATIVE_SYNTAXES[:2]))
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, no_delay),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_DATA_RECV, self._on_data),
            (evt.EVT_RELEASED, self._on_closed),
            (evt.EVT_ABORTED, self._on_closed),
            (evt.EVT_CONN_CLOSE, self._on_closed),
        ]
        try:
            self._server = ae.start_server(
                (lc.host, lc.port),
                block=False,
                ssl_context=server_tls(self.config),
                evt_handlers=handlers,
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {lc.host}:{lc.port}: {exc.strerror or exc}",
                hint="another program uses the port, or the address is not this machine's",
            ) from None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        """Refuse new associations and close the port (running ones are ended)."""
        self.accepting = False
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # -------------------------------------------------------------- handlers
    def _reject(
        self, event: Any, label: str, reason: str, diagnostic: int, permanent: bool = True
    ) -> None:
        log.warning("association rejected: %s", reason)
        self.on_reject(label)
        event.assoc.acse.send_reject(0x01 if permanent else 0x02, 0x01, diagnostic)
        event.assoc.kill()  # as pynetdicom's own rejections: lets the DUL send the A-ASSOCIATE-RJ

    def _on_requested(self, event: Any) -> None:
        req = event.assoc.requestor
        calling = str(req.primitive.calling_ae_title).strip()  # the A-ASSOCIATE-RQ's
        host = str(req.address)
        if not self.accepting:
            self._reject(event, "stopping", "the node is stopping (transient)", 0x01, False)
        elif (calling, host) not in self.allowed:
            # Both are configuration facts, not patient data: logged so a site can fix its list.
            why = f"calling AE {calling!r} from {host} is not on the allow-list"
            self._reject(event, "not_allowed", why, 0x03)

    def _on_echo(self, event: Any) -> int:
        return SUCCESS

    def _on_data(self, event: Any) -> None:
        key = id(event.assoc)
        with self._lock:
            n = self._received.get(key, 0) + len(event.data)
            self._received[key] = n
        if n > self.max_dataset + 65536:  # + room for the command set and PDU headers
            log.warning("association aborted: a data set exceeds %.0f MB", self.max_dataset / 1e6)
            self.on_reject("too_large")
            with self._lock:
                self._received[key] = 0
            event.assoc.abort()

    def _on_closed(self, event: Any) -> None:
        with self._lock:
            self._received.pop(id(event.assoc), None)

    def _on_store(self, event: Any) -> Any:
        from pydicom.dataset import Dataset

        with self._lock:
            self._received[id(event.assoc)] = 0
        req = event.request
        sop_class = str(req.AffectedSOPClassUID)
        if sop_class not in STORAGE_CLASSES:
            status = Status(SOP_CLASS_NOT_SUPPORTED, "SOP class not accepted")
        else:
            try:
                data = event.encoded_dataset(include_meta=True)
            except Exception as exc:  # a malformed request must not end the node
                status = Status(CANNOT_UNDERSTAND, f"data set not decodable: {type(exc).__name__}")
            else:
                status = self.store(
                    data, sop_class, str(req.AffectedSOPInstanceUID),
                    str(event.assoc.requestor.ae_title).strip(),
                )  # fmt: skip
        if status.code == SUCCESS:
            return SUCCESS
        answer = Dataset()
        answer.Status = status.code
        if status.comment:
            answer.ErrorComment = status.comment[:64]
        return answer


def no_delay(event: Any) -> None:
    """Turn Nagle's algorithm off on an association's socket (``EVT_CONN_OPEN``).

    A DIMSE message is a command PDU then a data PDU; with Nagle on, the second small write
    waits for the peer's delayed ACK: measured here, 45-90 ms per C-STORE instead of 5 ms.
    """
    import socket

    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            log.debug("could not set TCP_NODELAY")


def _quiet_pynetdicom() -> None:
    """pynetdicom logs identifiers at INFO and below: keep only its warnings and errors."""
    from pynetdicom import _config

    _config.LOG_HANDLER_LEVEL = "none"
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


__all__ = [
    "COMPRESSED_SYNTAXES", "NATIVE_SYNTAXES", "STORAGE_CLASSES", "Receiver", "Status",
    "client_tls", "no_delay", "server_tls", "transfer_syntaxes",
]  # fmt: skip
