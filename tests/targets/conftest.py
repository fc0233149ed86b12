"""The target contract tests use ``tiny_export`` / ``export_bundle`` from ``tests/conftest.py``
(one trained checkpoint and one export per profile for the whole session, shared with
``tests/safety``)."""

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def only_blocks(export_bundle: Any) -> Callable[..., tuple[list[str], tuple[str, ...]]]:
    """``only_blocks(pick) -> (kept blocks, excluded node names)``: every block of the tiny
    network but ``pick(groups)`` excluded, so a float-block search has only those to search
    (for speed: blocks the profile already excludes are not searched)."""
    from edgevcf.targets.mixed import layer_groups

    def pick_blocks(pick: Callable[[dict[str, list[str]]], list[str]]) -> Any:
        _, fp32 = export_bundle("onnx-cpu")
        groups = layer_groups(fp32.path / fp32.artifact().file)
        keep = sorted(pick(groups))
        return keep, tuple(n for k, v in groups.items() if k not in keep for n in v)

    return pick_blocks
