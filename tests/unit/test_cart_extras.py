"""A cart install carries no toolchain: the cart extras' *resolved* requirements hold none.

A cart installs core plus one engine (and perhaps serve, signing, decoders). When the
``[openvino]`` extra also asked for NNCF, a cart venv carried ~200 MB of NNCF, scipy,
scikit-learn, networkx and ninja that nothing on a cart ever imports. Engines belong in the
engine extras, toolchains in ``[export]``. This walks edgevcf's own installed metadata
(``importlib.metadata.requires("edgevcf")``) and, transitively, that of every installed
dependency, so a toolchain pulled in two levels down is caught too. The walk reads the
*installed* metadata: after editing pyproject.toml, reinstall (``make install``) first.
"""

from __future__ import annotations

import importlib.metadata as md
import re
from dataclasses import dataclass, field

import pytest

packaging_requirements = pytest.importorskip(
    "packaging.requirements", reason="needs packaging: pip install packaging"
)
Requirement = packaging_requirements.Requirement

#: What a cart may install: core (no extra) plus these.
CART_EXTRAS = ("onnxruntime", "openvino", "litert", "serve", "signing", "decoders", "jetson")

#: Export/training toolchains: none may be reached from a cart extra.
TOOLCHAIN = frozenset(
    {
        "torch",
        "torchvision",
        "nncf",
        "onnx",  # the converter package itself; onnxruntime is an engine
        "litert-torch",
        "scipy",
        "scikit-learn",
        "tensorflow",
        "transformers",
        "torchao",
        "safetensors",
        "matplotlib",
    }
)

OWN = "edgevcf"


def canonical(name: str) -> str:
    """PEP 503 normalisation: lowercase, runs of ``-_.`` become one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Resolution:
    """Every distribution name reached, how (``via``: name -> parent), and what was missing."""

    via: dict[str, str] = field(default_factory=dict)
    not_installed: set[str] = field(default_factory=set)

    def chain(self, name: str) -> str:
        path = [name]
        while path[-1] in self.via and self.via[path[-1]] != path[-1]:
            path.append(self.via[path[-1]])
        return " <- ".join(path)


def _applies(req: Requirement, extras: set[str]) -> bool:
    """Whether ``req`` is asked for when its distribution is installed with ``extras``."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in (extras | {""}))


def resolve(extras: set[str]) -> Resolution:
    """edgevcf with ``extras``, followed through the installed distributions' metadata."""
    res = Resolution(via={OWN: OWN})
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [(OWN, frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            res.not_installed.add(name)
            continue
        for line in requires:
            req = Requirement(line)
            if not _applies(req, set(wanted)):
                continue
            dep = canonical(req.name)
            res.via.setdefault(dep, name)
            todo.append((dep, frozenset(canonical(e) for e in req.extras)))
    return res


def test_own_metadata_declares_the_extras() -> None:
    """The walk below means something only if the extras it names exist."""
    declared = {canonical(e) for e in md.metadata(OWN).get_all("Provides-Extra") or []}
    assert set(CART_EXTRAS) | {"export"} <= declared, declared


@pytest.mark.parametrize("extra", [None, *CART_EXTRAS])
def test_cart_extra_pulls_no_toolchain(extra: str | None) -> None:
    res = resolve({extra} if extra else set())
    found = sorted(TOOLCHAIN & set(res.via))
    assert not found, (
        f"edgevcf[{extra or ''}] pulls toolchain(s): "
        + "; ".join(res.chain(name) for name in found)
        + f" (not installed here, so not followed: {sorted(res.not_installed) or 'none'};"
        " reinstall edgevcf if pyproject.toml changed since)"
    )


def test_export_extra_brings_nncf() -> None:
    """The toolchain moved, it did not vanish: NNCF comes with [export]."""
    res = resolve({"export"})
    assert "nncf" in res.via and res.via["nncf"] == OWN
    if "nncf" not in res.not_installed:  # the walk follows installed dependencies further:
        assert "scikit-learn" in res.via  # nncf's own requirement, in no edgevcf extra of export


def test_canonical_names() -> None:
    assert canonical("Scikit_Learn") == "scikit-learn"
    assert canonical("litert.torch") == "litert-torch"
    assert canonical("ai-edge--litert") == "ai-edge-litert"
