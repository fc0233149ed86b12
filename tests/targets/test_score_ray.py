"""``edgevcf score --ray``: the same rows as one process, bit for bit, on a real local Ray (one
per session), after an engine actor is killed mid-run, and on a two-node local cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgevcf.score import _read_part, examine_here, film_facts, films_of, read_rows, score

pytestmark = pytest.mark.requires_ray

BATCH = 4


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small DICOM films (not a multiple of the batch) and one unreadable file."""
    from edgevcf.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("ray-films")
    generate(root, 18, cfg=SynthConfig.fast(), seed=11, fmt="dicom", workers=1, preview=False,
             val=0, test=0)  # fmt: skip
    (root / "images" / "broken.dcm").write_bytes(b"not a DICOM")
    return root


def _by_hash(out: Path) -> dict[str, dict[str, Any]]:
    rows = read_rows(out)
    by = {str(r["file_hash"]): r for r in rows}
    assert len(by) == len(rows)  # exactly one row per film
    return by


def _same(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> None:
    assert a.keys() == b.keys()
    for k, r in a.items():
        s = b[k]
        for col in ("status", "reason", "uid_hash"):
            assert r[col] == s[col]
        if r["status"] == "ok":
            assert float(r["probability"]) == float(s["probability"])  # the same bits


def test_ray_gives_the_one_process_rows_and_resumes(
    ray_local: Any, export_bundle: Any, films: Path, tmp_path: Path
) -> None:
    from edgevcf.scale import RayPlan

    _, bundle = export_bundle("onnx-cpu")
    one, on_ray = tmp_path / "one", tmp_path / "ray"
    r1 = score(bundle.path, films, one, batch_size=BATCH, threads=2)
    plan = RayPlan(actors=1, threads=2)
    r2 = score(bundle.path, films, on_ray, batch_size=BATCH, part_films=8, ray=plan)
    n = len(films_of(films))
    assert r2["engine"] == "ray" and r2["scored_now"] == r1["scored_now"] == n
    assert r2["statuses"] == r1["statuses"] and r2["statuses"]["refused"] == 1
    _same(_by_hash(one), _by_hash(on_ray))
    # resumable: a lost part is redone on Ray, and nothing else
    lost = sorted(on_ray.glob("part-*"))[1]
    n_lost = len(_read_part(lost))
    lost.unlink()
    again = score(bundle.path, films, on_ray, batch_size=BATCH, part_films=8, ray=plan)
    assert again["scored_now"] == n_lost
    _same(_by_hash(one), _by_hash(on_ray))


def _scorer_pids() -> list[int]:
    """The processes of Ray Data's engine actors (their title names the class)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"_Scorer" in cmd and b"MapWorker" in cmd:
                pids.append(int(proc.name))
    return pids


def test_a_killed_actor_loses_no_film_and_scores_none_twice(
    ray_local: Any, export_bundle: Any, films: Path
) -> None:
    from ray import cloudpickle

    from edgevcf.runtime import Predictor
    from edgevcf.scale import RayPlan, examine_on_ray

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # _slow_facts, for the workers
    _, bundle = export_bundle("onnx-cpu")
    items = [(f.path, f.extra) for f in films_of(films)]
    pred = Predictor.from_bundle(bundle.path, threads=2)
    here = {i: e for b in examine_here(pred, items, batch_size=BATCH) for i, e, _ in b}
    got: dict[int, Any] = {}
    killed = []
    for batch in examine_on_ray(bundle.path, bundle.id, items, batch_size=BATCH,
                                plan=RayPlan(actors=1, threads=2), facts=_slow_facts):  # fmt: skip
        for i, e, _ in batch:
            assert i not in got  # never twice
            got[i] = e
        if not killed:  # the first batch is out: kill the engine actor mid-run
            pids = _scorer_pids()
            assert pids, "no engine actor process found"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed.extend(pids)
    assert killed and sorted(got) == list(range(len(items)))  # restarted; nothing lost
    for i, e in here.items():
        assert (got[i].status, got[i].logit) == (e.status, e.logit)


def _slow_facts(path: str, extra: dict[str, str]) -> dict[str, Any]:
    """film_facts, slowed so the run is still going when the actor is killed."""
    import time

    time.sleep(0.05)
    return film_facts(path, extra)


def test_score_cli_on_a_two_node_cluster(export_bundle: Any, films: Path, tmp_path: Path) -> None:
    """Two local nodes (two CPUs each: an actor and a reader) of a real cluster, reached by
    address from the CLI in a process of its own; the rows are the one-process rows."""
    from ray.cluster_utils import Cluster

    _, bundle = export_bundle("onnx-cpu")
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 2, "object_store_memory": 80 * 1024 * 1024,
                                      "include_dashboard": False})  # fmt: skip
    try:
        cluster.add_node(num_cpus=2, object_store_memory=80 * 1024 * 1024)
        cluster.wait_for_nodes()
        out = tmp_path / "two-nodes"
        cmd = [sys.executable, "-m", "edgevcf", "score", str(bundle.path), "--data", str(films),
               "--out", str(out), "--batch-size", str(BATCH), "--ray", cluster.address,
               "--ray-actors", "2", "--ray-threads", "1"]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        assert res.returncode == 0, res.stderr[-2000:]
        assert f"{len(films_of(films))} films" in res.stdout and "Traceback" not in res.stderr
    finally:
        cluster.shutdown()
    one = tmp_path / "one"
    score(bundle.path, films, one, batch_size=BATCH, threads=1)
    _same(_by_hash(one), _by_hash(out))


def test_validate_scores_on_ray_and_keeps_its_statistics_here(
    ray_local: Any, export_bundle: Any, films: Path, tmp_path: Path
) -> None:
    import numpy as np

    from edgevcf.data.manifest import Manifest
    from edgevcf.scale import RayPlan
    from edgevcf.site.score import score_site
    from edgevcf.site.validate import ValidateOptions, validate

    _, bundle = export_bundle("onnx-cpu")
    manifest = Manifest.load(films / "manifest.csv")
    here = score_site(bundle.path, manifest)
    plan = RayPlan(actors=1, threads=2)
    there = score_site(bundle.path, manifest, ray=plan)
    assert list(there.status) == list(here.status) and there.levels == here.levels
    ok = here.readable
    assert np.allclose(there.logits[ok], here.logits[ok], rtol=0, atol=1e-5)
    opts = ValidateOptions(ray=plan, figures=False, min_films=1, min_positives=1)
    r = validate(bundle.path, films / "manifest.csv", tmp_path / "v", opts)
    assert r["site"]["films"] == len(manifest.studies)
    assert (tmp_path / "v" / "validation.md").is_file()


def test_bench_accuracy_on_ray(ray_local: Any, export_bundle: Any, tiny_export: Any) -> None:
    """bench --data --ray: the same films, the same AUC as in one process (the engine batches
    differ from bench's one batch: equal to float noise)."""
    from edgevcf.bench import BenchConfig, bench
    from edgevcf.scale import RayPlan

    _, fp32 = export_bundle("onnx-cpu")
    here = bench([fp32.path], data=tiny_export.manifest,
                 cfg=BenchConfig(latency=False))["accuracy"]  # fmt: skip
    there = bench([fp32.path], data=tiny_export.manifest,
                  cfg=BenchConfig(latency=False, ray=RayPlan(actors=1)))["accuracy"]  # fmt: skip
    assert (there["n"], there["n_pos"]) == (here["n"], here["n_pos"])
    a, b = here["bundles"][0], there["bundles"][0]
    assert abs(a["auc"]["auc"] - b["auc"]["auc"]) < 1e-9
    assert b["at_threshold"] == a["at_threshold"] and b["quality_gate"]["n"] == here["n"]


def test_a_plan_that_starves_the_readers_is_refused(ray_local: Any, export_bundle: Any) -> None:
    """All CPUs to actors would leave the read tasks none (ray#44687): a clear error instead of
    a run that waits forever."""
    from edgevcf.errors import ConfigError
    from edgevcf.scale import RayPlan, examine_on_ray

    _, bundle = export_bundle("onnx-cpu")
    plan = RayPlan(actors=2, threads=1, actor_cpus=1.0)
    with pytest.raises(ConfigError, match="starve"):
        next(iter(examine_on_ray(bundle.path, bundle.id, [("x.dcm", {})], plan=plan)))
