"""The drift watch on simulated months: false alarms in control, detection delays after shifts.

The same code the node runs (:class:`edgevcf.watch.drift.DriftWatch`), fed the same records.
Each condition's films are scored once by the bundle as the cart would (gate verdict, P(fresh),
decision, header bands) into a pool, and days are resampled from the pools (Poisson(40) films a
day by default); rendering and scoring a year of films per seed is not needed.

Conditions (every run starts with the site's own 28-day burn-in as the reference):

* ``in control``: 365 days of the home site: false alarms per signal per 365 days;
* shifts from day 60 after the burn-in, each alone: a new detector (``clinic-edge``: another
  vendor, header and processing), a processing update of the same detector (``clinic-edge``'s
  films with the home site's headers), a brighter display curve (``clinic-bright``), a low-dose
  room (``clinic-lowdose``), a dark, mis-windowed one (``clinic-dark``), prevalence +15 points,
  and a wrong-body-part stream (20 % of films other anatomy from the quality gate's generator):
  days to the first alarm, by signal.

    .venv/bin/python benchmarks/drift.py                       # demo bundle, 100 seeds
    .venv/bin/python benchmarks/drift.py --seeds 20 --bundle BUNDLE

Pools go to ``~/.cache/edgevcf/drift/``; results to
``benchmarks/results/<machine>-drift.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from site_validation import site_films

from edgevcf.dataset import cache_root
from edgevcf.machine import machine_info, machine_label
from edgevcf.watch.drift import SIGNALS, DriftWatch, FilmRecord, WatchConfig

BODY_PARTS = ("ap_spine", "chest_pa", "pelvis", "hand", "skull", "long_bone")
SHIFT_DAY = 60  # days after the burn-in
READING = (
    "Reading: false alarms are per signal; watching them all (four CUSUMs at about 0.8 a year "
    "each, the metadata tests at 0.2) one run in three has one somewhere in 60 days. The "
    "low-dose room leaves the model's output and the gate as they were here; it is caught by "
    "its header (the exposure band) at the end of its first 14-day window. A processing update "
    "that keeps the header is caught by the output (mean score, positive rate), a "
    "wrong-body-part stream by the gate the next day."
)
BOUNDS = {  # the area's goal: days to detect
    "new detector": 14,
    "processing update": 14,
    "low-dose room": 14,
    "prevalence +15 pt": 30,
}


@dataclass
class Pool:
    """Scored films of one condition (arrays aligned by film)."""

    assessable: np.ndarray
    prob: np.ndarray
    gate: np.ndarray
    label: np.ndarray
    levels: list[dict[str, str]]

    def save(self, path: Path) -> None:
        np.savez(path.with_suffix(".npz"), assessable=self.assessable, prob=self.prob,
                 gate=self.gate, label=self.label)  # fmt: skip
        path.with_suffix(".json").write_text(json.dumps(self.levels))

    @classmethod
    def load(cls, path: Path) -> Pool:
        z = np.load(path.with_suffix(".npz"))
        levels = json.loads(path.with_suffix(".json").read_text())
        return cls(z["assessable"], z["prob"], z["gate"], z["label"], levels)


def score_pool(bundle: Path, manifest: Path) -> Pool:
    from edgevcf.data.manifest import Manifest
    from edgevcf.site.score import score_site

    films = score_site(bundle, Manifest.load(manifest))
    return Pool(films.status == "ok", films.probs(), films.gate_scores, films.labels,
                films.levels)  # fmt: skip


def oos_pool(bundle: Path, per_family: int) -> Pool:
    """Other anatomy through the cart's path (gate, then the model), labels 0."""
    from edgevcf.data.synth.oos import generate_oos
    from edgevcf.runtime import Predictor

    pred = Predictor.from_bundle(bundle)
    ok, prob, gate = [], [], []
    for fam in BODY_PARTS:
        for i in range(per_family):
            x, v = pred.examine(generate_oos(fam, 77, i, (600, 900)))
            ok.append(v.assessable)
            gate.append(np.nan if v.score is None else v.score)
            prob.append(float(1 / (1 + np.exp(-pred.logits(x)[0]))) if v.assessable else np.nan)
    n = len(ok)
    return Pool(np.array(ok), np.array(prob), np.array(gate), np.zeros(n, int), [{}] * n)


def pools(bundle: Path, patients: int, per_family: int) -> dict[str, Pool]:
    from edgevcf.bundle import Bundle

    root = cache_root() / "drift" / Bundle.load(bundle).id
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("home", "clinic-edge", "clinic-bright", "clinic-dark", "clinic-lowdose"):
        f = root / f"{name}-{patients}"
        if not f.with_suffix(".npz").is_file():
            t0 = time.perf_counter()
            man = site_films(name, patients, 7, cache_root() / "site")
            score_pool(bundle, man).save(f)
            print(f"scored {name} in {time.perf_counter() - t0:.0f} s", flush=True)
        out[name] = Pool.load(f)
    f = root / f"body-parts-{per_family}"
    if not f.with_suffix(".npz").is_file():
        oos_pool(bundle, per_family).save(f)
    out["body-parts"] = Pool.load(f)
    return out


def _records(pool: Pool, idx: np.ndarray, day: str, thr: float,
             levels_from: Pool | None = None, rng: Any = None) -> list[FilmRecord]:  # fmt: skip
    out = []
    for i in idx:
        ok = bool(pool.assessable[i])
        p = float(pool.prob[i])
        lv = pool.levels[i]
        if levels_from is not None:
            lv = levels_from.levels[int(rng.integers(len(levels_from.levels)))]
        out.append(FilmRecord(day, ok, (p >= thr) if ok else None, p if ok else None,
                              None if not math.isfinite(pool.gate[i]) else float(pool.gate[i]),
                              lv))  # fmt: skip
    return out


def day_films(cond: str, pools_: dict[str, Pool], shifted: bool, n: int, thr: float,
              day: str, rng: Any) -> list[FilmRecord]:  # fmt: skip
    """One day's films of ``cond`` (home until ``shifted``)."""
    home = pools_["home"]
    if not shifted or cond == "in control":
        return _records(home, rng.integers(len(home.label), size=n), day, thr)
    if cond == "prevalence +15 pt":
        prev = home.label.mean() + 0.15
        pos, neg = np.flatnonzero(home.label == 1), np.flatnonzero(home.label == 0)
        k = rng.binomial(n, prev)
        idx = np.concatenate([rng.choice(pos, k), rng.choice(neg, n - k)])
        return _records(home, rng.permutation(idx), day, thr)
    if cond == "wrong body part (20 %)":
        k = rng.binomial(n, 0.2)
        oos = pools_["body-parts"]
        recs = _records(home, rng.integers(len(home.label), size=n - k), day, thr)
        recs += _records(oos, rng.integers(len(oos.label), size=k), day, thr, home, rng)
        return [recs[i] for i in rng.permutation(len(recs))]
    src = {"new detector": "clinic-edge", "processing update": "clinic-edge",
           "brighter display curve": "clinic-bright", "low-dose room": "clinic-lowdose",
           "dark, mis-windowed room": "clinic-dark"}[cond]  # fmt: skip
    pool = pools_[src]
    levels_from = home if cond == "processing update" else None
    return _records(pool, rng.integers(len(pool.label), size=n), day, thr, levels_from, rng)


def run(cond: str, pools_: dict[str, Pool], seed: int, thr: float, per_day: float,
        days: int, cfg: WatchConfig, h_cache: dict[Any, Any]) -> dict[str, Any]:  # fmt: skip
    rng = np.random.default_rng([seed, zlib.crc32(cond.encode())])
    watch = DriftWatch(cfg)
    alarms = []
    for d in range(cfg.burn_in + days):
        label = f"{d:04d}"
        shifted = d >= cfg.burn_in + SHIFT_DAY
        recs = day_films(cond, pools_, shifted, int(rng.poisson(per_day)), thr, label, rng)
        if not watch.ready and d == cfg.burn_in - 1:
            pass
        alarms += watch.add_period(label, recs)
    return {"alarms": [(a.signal, int(a.raised) - cfg.burn_in) for a in alarms], "h": watch.h}


def summarise(cond: str, results: list[dict[str, Any]], days: int) -> dict[str, Any]:
    out: dict[str, Any] = {"condition": cond, "runs": len(results)}
    if cond == "in control":
        per = {s: [sum(1 for a in r["alarms"] if a[0] == s) for r in results] for s in SIGNALS}
        mix = [sum(1 for a in r["alarms"] if a[0].startswith("mix:")) for r in results]
        out["false_alarms_per_365_days"] = {
            **{s: float(np.mean(v)) * 365 / days for s, v in per.items()},
            "metadata mix (all fields)": float(np.mean(mix)) * 365 / days,
        }
        return out
    delays: dict[str, list[float]] = {}
    early = 0
    for r in results:
        pre = [a for a in r["alarms"] if a[1] < SHIFT_DAY]
        early += bool(pre)
        first: dict[str, int] = {}
        for s, day in r["alarms"]:
            if day >= SHIFT_DAY:
                key = "mix" if s.startswith("mix:") else s
                first.setdefault(key, day - SHIFT_DAY + 1)
        any_ = min(first.values()) if first else math.inf
        delays.setdefault("any signal", []).append(any_)
        for s in (*SIGNALS, "mix"):
            delays.setdefault(s, []).append(first.get(s, math.inf))
    out["runs_with_an_alarm_before_the_shift"] = early
    out["delay_days"] = {
        s: {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
            "detected": float(np.mean(np.isfinite(v)))}
        for s, v in delays.items()
    }  # fmt: skip
    return out


def shadow_runs(bundle: Path, candidate: Path, patients: int, seeds: int, per_day: float,
                weeks: int) -> dict[str, Any]:  # fmt: skip
    """Shadow mode on simulated weeks: the served bundle against a candidate equal to it (the
    FP32 reference of the INT8 bundle: it passes the gate) and one worse by a known amount (the
    same network at a threshold that costs 10 points of sensitivity on the home pool), on the
    same films (paired), labels for every film. Each week: the label-free comparison and the
    report's promotion rule (14 days, 500 films, 50 labelled positives and negatives, the gate,
    no subgroup shown worse)."""
    from edgevcf import metrics
    from edgevcf.bundle import Bundle
    from edgevcf.watch.shadow import ShadowTally

    root = cache_root() / "drift" / Bundle.load(bundle).id
    man = site_films("home", patients, 7, cache_root() / "site")
    f = root / f"home-{patients}-candidate-{Bundle.load(candidate).id[:12]}"
    if not f.with_suffix(".npz").is_file():
        score_pool(candidate, man).save(f)
    prim, cand = Pool.load(root / f"home-{patients}"), Pool.load(f)
    ok = prim.assessable & cand.assessable
    y, pp, pc = prim.label[ok].astype(bool), prim.prob[ok], cand.prob[ok]
    tp, tc = Bundle.load(bundle).threshold, Bundle.load(candidate).threshold
    sens_c = float((pc[y] >= tc).mean())
    worse_t = float(np.quantile(pc[y], 1 - (sens_c - 0.10)))
    out: dict[str, Any] = {"films_in_pool": int(ok.sum()), "thresholds": {
        "served": tp, "equal": tc, "worse": worse_t}, "candidates": {}}  # fmt: skip
    for name, t_c in (("equal (FP32 reference)", tc), ("worse (-10 pt sensitivity)", worse_t)):
        weekly = []
        for w in range(1, weeks + 1):
            rows = {"promote": 0, "gate_passed": 0, "mcnemar_below_0.05": 0, "kappa": []}
            for seed in range(seeds):
                rng = np.random.default_rng([seed, 7])
                n = int(rng.poisson(per_day * 7 * w))
                idx = rng.integers(len(y), size=n)
                yy, a, b = y[idx], pp[idx], pc[idx]
                tally = ShadowTally()
                for da, db in zip(a >= tp, b >= t_c, strict=True):
                    tally.add(bool(da), bool(db))
                cmp = tally.compare()
                gate = metrics.gate_for({}, yy, a, b, tp, t_c)
                enough = w * 7 >= 14 and n >= 500 and yy.sum() >= 50 and (~yy).sum() >= 50
                rows["promote"] += bool(enough and gate.passed)
                rows["gate_passed"] += bool(gate.passed)
                rows["mcnemar_below_0.05"] += bool(cmp["mcnemar_p"] < 0.05)
                rows["kappa"].append(cmp["kappa"]["value"])
            weekly.append({"week": w, "films": round(per_day * 7 * w),
                           "promote": rows["promote"] / seeds,
                           "gate_passed": rows["gate_passed"] / seeds,
                           "mcnemar_below_0.05": rows["mcnemar_below_0.05"] / seeds,
                           "kappa_median": float(np.median(rows["kappa"]))})  # fmt: skip
        out["candidates"][name] = weekly
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, default=Path("demo-out/bundles/openvino-int8"))
    ap.add_argument("--patients", type=int, default=800)
    ap.add_argument("--per-family", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--per-day", type=float, default=40.0)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--conditions", nargs="*", help="only these (default: all)")
    ap.add_argument(
        "--shadow-candidate",
        type=Path,
        default=Path("demo-out/bundles/onnx-cpu-fp32"),
        help="the equal candidate of the shadow rows (none: skip them)",
    )
    ap.add_argument(
        "--shadow-weeks",
        type=int,
        default=4,
        help="weeks of 40 films a day (4: about the pool; beyond, films repeat)",
    )
    ap.add_argument(
        "--only-shadow",
        action="store_true",
        help="run the shadow rows alone, into this machine's existing results",
    )
    args = ap.parse_args()
    from edgevcf import progress
    from edgevcf.bundle import Bundle

    progress.set_enabled(False)
    t0 = time.perf_counter()
    if args.only_shadow:
        stem = args.out / f"{machine_label()}-drift"
        result = json.loads(stem.with_suffix(".json").read_text())
        result["shadow"] = shadow_runs(args.bundle, args.shadow_candidate, args.patients,
                                       args.seeds, args.per_day, args.shadow_weeks)  # fmt: skip
        result["shadow"]["seconds"] = round(time.perf_counter() - t0, 1)
        stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
        stem.with_suffix(".md").write_text(markdown(result))
        print(stem.with_suffix(".md"))
        return
    thr = Bundle.load(args.bundle).threshold
    pl = pools(args.bundle, args.patients, args.per_family)
    cfg = WatchConfig()
    conds = ["in control", "new detector", "processing update", "brighter display curve",
             "low-dose room", "dark, mis-windowed room", "prevalence +15 pt",
             "wrong body part (20 %)"]  # fmt: skip
    rows = []
    pool_facts = {
        k: {"films": len(p.label), "refused": float(1 - p.assessable.mean()),
            "positive_rate": float((p.prob[p.assessable] >= thr).mean())
            if p.assessable.any() else None}
        for k, p in pl.items()
    }  # fmt: skip
    for cond in [c for c in conds if not args.conditions or c in args.conditions]:
        t1 = time.perf_counter()
        days = args.days if cond == "in control" else SHIFT_DAY + 60
        res = [run(cond, pl, s, thr, args.per_day, days, cfg, {}) for s in range(args.seeds)]
        rows.append(summarise(cond, res, days))
        rows[-1]["h"] = res[0]["h"]
        rows[-1]["seconds"] = round(time.perf_counter() - t1, 1)
        print(json.dumps(rows[-1]), flush=True)
    shadow = None
    if args.shadow_candidate and args.shadow_candidate.is_dir():
        t1 = time.perf_counter()
        shadow = shadow_runs(args.bundle, args.shadow_candidate, args.patients, args.seeds,
                             args.per_day, args.shadow_weeks)  # fmt: skip
        shadow["seconds"] = round(time.perf_counter() - t1, 1)
        print(json.dumps(shadow)[:400], flush=True)
    result = {"machine": machine_info(), "bundle": str(args.bundle), "shadow": shadow,
              "model_id": Bundle.load(args.bundle).id, "pools": pool_facts,
              "settings": vars(args) | {"bundle": str(args.bundle), "out": str(args.out)},
              "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{machine_label()}-drift"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    stem.with_suffix(".md").write_text(markdown(result))
    print(stem.with_suffix(".md"))


def _days(v: float) -> str:
    return f"{v:.0f}" if math.isfinite(v) else ">60"


def cell(v: dict[str, float]) -> str:
    """Median / 90th percentile days to the first alarm (share detected within 60 days)."""
    if not v["detected"]:
        return "-"
    return f"{_days(v['median'])} / {_days(v['p90'])} ({v['detected']:.0%})"


def markdown(r: dict[str, Any]) -> str:
    lines = ["# Drift watch on simulated months", "", f"Machine: {machine_label(r['machine'])}",
             "", f"Bundle `{r['bundle']}` (model id {r.get('model_id', '')}); "
             f"{r['settings']['seeds']} runs a condition, Poisson({r['settings']['per_day']:g}) "
             "films a day, a 28-day burn-in as the reference, then 365 days in control or a "
             f"shift from day {SHIFT_DAY}; {r['seconds']:.0f} s in all.",
             "", "## Pools (scored once by the bundle)", "",
             "| pool | films | refused by the gate | positive rate |",
             "|---|---|---|---|"]  # fmt: skip
    for k, p in r["pools"].items():
        rate = "-" if p["positive_rate"] is None else f"{p['positive_rate']:.1%}"
        lines.append(f"| {k} | {p['films']} | {p['refused']:.1%} | {rate} |")
    ic = next(x for x in r["rows"] if x["condition"] == "in control")
    lines += ["", f"## In control: false alarms per signal per 365 days ({ic['runs']} runs)", "",
              "| signal | false alarms / 365 days | h |", "|---|---|---|"]  # fmt: skip
    for s, v in ic["false_alarms_per_365_days"].items():
        lines.append(f"| {s} | {v:.2f} | {ic['h'].get(s, '')} |")
    lines += ["", "## Shifts from day 60: days to the first alarm (median / 90th percentile; "
              "share detected within 60 days)", "",
              "| shift | any signal | " + " | ".join(SIGNALS)
              + " | metadata mix | runs with a false alarm in the 60 days before | bound |",
              "|---|---|" + "---|" * (len(SIGNALS) + 3)]  # fmt: skip
    for x in r["rows"]:
        if x["condition"] == "in control":
            continue
        d = x["delay_days"]

        cells = [cell(d["any signal"]), *(cell(d[s]) for s in SIGNALS), cell(d["mix"]),
                 f"{x['runs_with_an_alarm_before_the_shift'] / x['runs']:.0%}"]  # fmt: skip
        bound = BOUNDS.get(x["condition"])
        lines.append(f"| {x['condition']} | " + " | ".join(cells)
                     + f" | {'<= ' + str(bound) + ' days' if bound else ''} |")  # fmt: skip
    lines += ["", READING]
    sh = r.get("shadow")
    if sh:
        lines += ["", "## Shadow mode: a candidate beside the served bundle, week by week", "",
                  f"Same films for both (home pool, {sh['films_in_pool']} films, resampled), "
                  "labels for every film; share of runs where the report's promotion rule holds "
                  "(14 days, 500 films, 50 labelled positives and negatives, the paired gate), "
                  "the gate alone, and the label-free exact McNemar p < 0.05.", "",
                  "| candidate | week | films | promote | gate passed | McNemar p < 0.05 "
                  "| kappa (median) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, weekly in sh["candidates"].items():
            for w in weekly:
                lines.append(f"| {name} | {w['week']} | {w['films']} | {w['promote']:.0%} | "
                             f"{w['gate_passed']:.0%} | {w['mcnemar_below_0.05']:.0%} | "
                             f"{w['kappa_median']:.3f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
