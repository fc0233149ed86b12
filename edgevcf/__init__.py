"""edgevcf: put a fresh-fracture classifier on edge hardware and prove it still works there.

Importing the package stays light (numpy at most, lazily): heavy backends such as torch,
onnxruntime, openvino, nncf and tensorrt are imported only inside the functions that use them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from edgevcf.errors import EdgeVCFError

__all__ = ["EdgeVCFError", "__version__"]
