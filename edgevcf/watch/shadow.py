"""Shadow comparison: two bundles' decisions on the same films, without a label.

A candidate bundle scored beside the primary on the cart's real stream is judged by its
*decisions* — what a shadow test in SageMaker or Seldon does not compare — from the paired 2 x 2
table of positive / negative decisions (:class:`ShadowTally`, counts only, so the node can keep
it across restarts):

* agreement (Wilson CI) and Cohen's kappa (agreement beyond chance, with its large-sample
  standard error, Fleiss, Cohen & Everitt 1969);
* each bundle's positive rate and their difference, candidate minus primary, with Newcombe's
  paired interval (:func:`edgevcf.metrics.paired_proportion_diff`);
* McNemar's exact test on the discordant pairs (:func:`edgevcf.metrics.mcnemar`, ``exact``):
  do the disagreements lean one way (the candidate calls more, or fewer, films fresh)?

Films either bundle could not assess are counted apart (a refusal is not a decision). numpy
and :mod:`math` only: the cart runs this.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgevcf import metrics


@dataclass
class ShadowTally:
    """The paired decisions of a primary and a candidate bundle (counts; JSON-able).

    ``both_pos``: both fresh; ``primary_only``: only the primary fresh; ``candidate_only``: only
    the candidate; ``both_neg``: neither; ``unpaired``: films either could not assess.
    """

    both_pos: int = 0
    primary_only: int = 0
    candidate_only: int = 0
    both_neg: int = 0
    unpaired: int = 0

    def add(self, primary: bool | None, candidate: bool | None) -> None:
        """One film's two decisions (None: that bundle did not assess it)."""
        if primary is None or candidate is None:
            self.unpaired += 1
        elif primary and candidate:
            self.both_pos += 1
        elif primary:
            self.primary_only += 1
        elif candidate:
            self.candidate_only += 1
        else:
            self.both_neg += 1

    @property
    def n(self) -> int:
        """Films both bundles decided."""
        return self.both_pos + self.primary_only + self.candidate_only + self.both_neg

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShadowTally:
        return cls(**{k: int(d.get(k, 0)) for k in cls.__dataclass_fields__})

    def compare(self, level: float = 0.95) -> dict[str, Any]:
        """Agreement, Cohen's kappa, positive rates and their paired difference, exact McNemar."""
        n = self.n
        out: dict[str, Any] = {"films": n, "unpaired": self.unpaired, "level": level,
                               "counts": self.to_dict()}  # fmt: skip
        if n == 0:
            return out | {"agreement": None, "kappa": None, "positive_rate": None,
                          "difference": None, "mcnemar_p": None}  # fmt: skip
        agree = self.both_pos + self.both_neg
        p_primary = (self.both_pos + self.primary_only) / n
        p_candidate = (self.both_pos + self.candidate_only) / n
        po = agree / n
        pe = p_primary * p_candidate + (1 - p_primary) * (1 - p_candidate)
        z = metrics.z_critical(level)
        if pe < 1:
            kappa = (po - pe) / (1 - pe)
            se = math.sqrt(max(po * (1 - po), 0.0) / (n * (1 - pe) ** 2))
            kap: dict[str, Any] = {"value": kappa, "se": se, "ci_low": kappa - z * se,
                                   "ci_high": kappa + z * se}  # fmt: skip
        else:  # both bundles gave one decision to every film: kappa is undefined
            kap = {"value": None, "se": None, "ci_low": None, "ci_high": None}
        prim = np.array([True] * self.both_pos + [True] * self.primary_only
                        + [False] * self.candidate_only + [False] * self.both_neg)  # fmt: skip
        cand = np.array([True] * self.both_pos + [False] * self.primary_only
                        + [True] * self.candidate_only + [False] * self.both_neg)  # fmt: skip
        diff = metrics.paired_proportion_diff(prim, cand, level)
        return out | {
            "agreement": metrics.wilson(agree, n, level).to_dict(),
            "kappa": kap,
            "positive_rate": {"primary": p_primary, "candidate": p_candidate},
            "difference": {
                "value": diff.diff,
                "ci_low": diff.ci_low,
                "ci_high": diff.ci_high,
                "method": diff.method,
            },
            "mcnemar_p": metrics.mcnemar(self.primary_only, self.candidate_only, exact=True),
        }
