"""The target contract tests use ``tiny_export`` / ``export_bundle`` from ``tests/conftest.py``
(one trained checkpoint and one export per profile for the whole session, shared with
``tests/safety``)."""
