"""The synthetic lateral thoracolumbar radiograph generator (the built-in default data).

``generate`` writes a dataset; ``sample_film`` one full-size DICOM for timing;
``SynthConfig`` holds every knob with its literature default;
``sample_patient``/``sample_view``/``render`` make single images for tests and notebooks.
Needs scipy (``pip install 'edgevcf[synth]'``) for filtering.
"""

from __future__ import annotations

from edgevcf.data.synth.config import SynthConfig
from edgevcf.data.synth.generate import SynthResult, generate, sample_film

__all__ = ["SynthConfig", "SynthResult", "generate", "sample_film"]
