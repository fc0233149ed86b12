"""The cart's DICOM side: what ``edgevcf serve`` is built from (cart side: no toolchain imports).

So far: :mod:`edgevcf.serve.sr`, the Structured Report that carries one film's result back to
the hospital's systems with the producing model's identity; :mod:`edgevcf.serve.journal`, the
SQLite (WAL) job journal that makes every accepted film survive a crash, once per SOP Instance UID;
:mod:`edgevcf.serve.spool`, where a film is stored whole (fsynced) before success is answered;
:mod:`edgevcf.serve.config`, the strictly checked ``serve.toml``.
"""
