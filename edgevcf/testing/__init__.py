"""Test support, not used by the cart at run time: fuzzing the image readers.

The fuzzer is library code shared by ``tests/safety`` and ``benchmarks/fuzz_readers.py``, so it
lives here, importable, rather than in a script. Nothing in :mod:`edgevcf` imports this package
(``import edgevcf`` stays light); its heavy imports (numpy, pydicom, Pillow, the runtime) are
made inside the functions that use them.

* :mod:`~edgevcf.testing.fuzz_corpus`: the seed files, per format;
* :mod:`~edgevcf.testing.fuzz_mutators`: seeded, structure-aware mutations of them;
* :mod:`~edgevcf.testing.fuzz_harness`: each input read in a watched worker process, classified,
  and counted per campaign;
* :mod:`~edgevcf.testing.fuzz_report`: a campaign's JSON and Markdown summaries.
"""
