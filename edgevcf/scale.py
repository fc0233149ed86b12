"""Archive-scale work on Ray: films streamed through read tasks into a pool of engine actors.

The field's engine for batch inference across machines — Ray Data: the films' paths become a
dataset of *batches* (``batch_size`` consecutive films, cut exactly as the one-process path cuts
them, so each film's probability has the same bits for the same engine and thread count);
read tasks turn each batch into graph inputs and the quality gate's verdicts
(:class:`~edgevcf.runtime.Examiner`: no engine), and a pool of actors, each holding one
:class:`~edgevcf.runtime.Predictor` with its own engine threads, scores them
(:meth:`~edgevcf.runtime.Predictor.run_checked`). The driver gets the results as they stream
out and keeps every statistic. An actor that dies is restarted and its batch retried by Ray
(Ray Data's defaults: ``max_restarts=-1``, ``max_task_retries=-1``); a film that fails is a
result with its reason.

Ray is an extra (``edgevcf[ray]``): nothing on a cart imports this module. Every node must see
the films and the bundle at the same paths (a shared or copied file system) and have edgevcf
installed.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from edgevcf import progress
from edgevcf.errors import BundleError, ConfigError

log = logging.getLogger(__name__)

#: What Facts functions return: per-film fields computed where the film is read (its header's
#: subgroup levels, a hashed UID), so the driver never opens a film.
Facts = Callable[[str, dict[str, str]], dict[str, Any]]


@dataclass(frozen=True)
class RayPlan:
    """How a run uses the cluster.

    Attributes:
        address: ``auto`` (a running cluster if there is one, else a local Ray on this
            machine's cores) or a cluster's address (``HOST:PORT``, ``ray://HOST:PORT``).
        actors: Engine actors (each loads the model once); None: one per ``threads`` CPUs of
            the cluster, at least one.
        threads: Engine threads per actor (the engine's intra-op threads).
        actor_cpus: CPUs Ray reserves per actor. Less than ``threads`` leaves the read tasks
            CPUs to be scheduled on (all CPUs to actors starves the readers: ray#44687).
            Reservations place work, they do not cap it: on 2 cores, one actor of 2 threads
            with half a CPU reserved and readers of half a CPU scored as fast as one process,
            and 30 % faster than whole CPUs (``benchmarks/results/*-scale.md``).
        read_cpus: CPUs Ray reserves per read task.
        debug: Ray's own console output (logs, progress per operator) on.
    """

    address: str = "auto"
    actors: int | None = None
    threads: int = 2
    actor_cpus: float = 0.5
    read_cpus: float = 0.5
    debug: bool = False

    def __post_init__(self) -> None:
        if self.threads < 1 or (self.actors is not None and self.actors < 1):
            raise ConfigError("--ray-threads and --ray-actors must be at least 1")
        if self.actor_cpus <= 0 or self.read_cpus <= 0:
            raise ConfigError("CPUs per actor and per read task must be above 0")


def connect(address: str = "auto", *, debug: bool = False) -> Any:
    """Ray, initialised: the running session in this process, else the cluster at ``address``;
    ``auto`` with no cluster running starts a local one on this machine's cores (no dashboard,
    Ray's own console output off unless ``debug``)."""
    from edgevcf.deps import require

    require("ray")
    import ray

    if not ray.is_initialized():
        _init(ray, address, debug)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = debug  # ours counts films; Ray's count blocks per operator
    ctx.print_on_execution_start = debug
    if not debug:
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its progress log, when no tty
    return ray


def _init(ray: Any, address: str, debug: bool) -> None:
    quiet: dict[str, Any] = (
        {} if debug else {"logging_level": logging.ERROR, "log_to_driver": False}
    )
    try:
        if address == "auto":
            try:
                ray.init(address="auto", **quiet)
            except ConnectionError:
                ray.init(include_dashboard=False, num_cpus=os.cpu_count() or 1, **quiet)
        else:
            ray.init(address=address, **quiet)
    except ConnectionError as exc:
        raise ConfigError(
            f"no Ray cluster at {address}: {exc}",
            hint="start one (ray start --head) or use --ray auto for a local Ray",
        ) from None


# ---- what runs on the workers (module level: Ray pickles them by reference) ----------------
_EXAMINERS: dict[tuple[str, str], Any] = {}


def _examiner(bundle: str, model_id: str) -> Any:
    """This worker's Examiner for the bundle, loaded once per process (verified: a bundle that
    is not the driver's at this path is refused)."""
    key = (bundle, model_id)
    if key not in _EXAMINERS:
        from edgevcf.bundle import Bundle
        from edgevcf.runtime import Examiner

        ex = Examiner(Bundle.load(bundle))
        if ex.model_id != model_id:
            raise BundleError(f"{bundle} on this node is model {ex.model_id[:12]}, not "
                              f"{model_id[:12]}: copy the same bundle to every node")  # fmt: skip
        _EXAMINERS[key] = ex
    return _EXAMINERS[key]


def _read_batches(
    rows: dict[str, Any], bundle: str, model_id: str, facts: Facts | None
) -> dict[str, Any]:
    """Ray read task: each row is one engine batch of films -> their graph inputs, verdicts or
    refusals, and per-film facts (pickled: a batch's arrays travel as one object)."""
    ex = _examiner(bundle, model_id)
    out = []
    for films in rows["films"]:
        items = pickle.loads(films)
        checked = ex.check_many([path for _, path, _ in items], workers=1)
        fact = [facts(path, extra) if facts else {} for _, path, extra in items]
        out.append(pickle.dumps(([i for i, _, _ in items], checked, fact)))
    return {"films": out}


class _Scorer:
    """Ray actor: one Predictor (its own engine threads) scoring the batches the readers made."""

    def __init__(self, bundle: str, model_id: str, backend: str, threads: int, gated: bool):
        from edgevcf.runtime import Predictor

        self.pred = Predictor.from_bundle(bundle, backend=backend, threads=threads)
        if self.pred.model_id != model_id:
            raise BundleError(f"{bundle} on this node is not model {model_id[:12]}")
        self.pred.warm()
        self.gated = gated

    def __call__(self, rows: dict[str, Any]) -> dict[str, Any]:
        out = []
        for films in rows["films"]:
            idx, checked, fact = pickle.loads(films)
            done = self.pred.run_checked(checked, batch_size=len(checked), gated=self.gated)
            out.append(pickle.dumps(list(zip(idx, done, fact, strict=True))))
        return {"films": out}


def examine_on_ray(
    bundle: str | os.PathLike[str],
    model_id: str,
    films: Sequence[tuple[str, dict[str, str]]],
    *,
    plan: RayPlan,
    batch_size: int = 8,
    gated: bool = True,
    backend: str = "auto",
    facts: Facts | None = None,
    desc: str = "score on Ray",
) -> Iterator[Sequence[tuple[int, Any, dict[str, Any]]]]:
    """Engine batches of (film index, :class:`~edgevcf.runtime.Examined`, facts), for every film
    of ``films`` (path, manifest columns), in the order the batches finish.

    ``batch_size`` consecutive films make one engine batch, as
    :meth:`~edgevcf.runtime.Predictor.predict_many` cuts them; ``bundle`` must be the one the
    driver verified (``model_id``), at the same path on every node.
    """
    ray = connect(plan.address, debug=plan.debug)
    bs = max(1, batch_size)
    batches = [
        {"films": pickle.dumps([(i, films[i][0], films[i][1])
                                for i in range(s, min(len(films), s + bs))])}
        for s in range(0, len(films), bs)
    ]  # fmt: skip
    if not batches:
        return
    cpus = float(ray.cluster_resources().get("CPU", 1))
    actors = plan.actors or max(1, int(cpus // plan.threads))
    if actors * plan.actor_cpus + plan.read_cpus > cpus:
        raise ConfigError(
            f"{actors} actor(s) x {plan.actor_cpus:g} CPU leave no {plan.read_cpus:g} CPU of the "
            f"cluster's {cpus:g} for the read tasks: the run would starve",
            hint="fewer --ray-actors, or a fraction of a CPU each (--ray-actor-cpus 0.5)",
        )
    path = os.fspath(bundle)

    ds = (
        ray.data.from_items(batches, override_num_blocks=min(len(batches), max(1, int(cpus) * 8)))
        # Reads spread over the nodes, actors where Ray puts them: the differing strategies
        # also keep Ray from fusing the reads into the actors (fused, each actor would read a
        # batch and then score it, one after the other).
        .map_batches(_read_batches, batch_size=1, num_cpus=plan.read_cpus,
                     scheduling_strategy="SPREAD",
                     fn_kwargs={"bundle": path, "model_id": model_id, "facts": facts})
        .map_batches(_Scorer, batch_size=1, num_cpus=plan.actor_cpus, scheduling_strategy="DEFAULT",
                     compute=ray.data.ActorPoolStrategy(size=actors),
                     fn_constructor_kwargs={"bundle": path, "model_id": model_id,
                                            "backend": backend, "threads": plan.threads,
                                            "gated": gated})
    )  # fmt: skip

    def results() -> Iterator[list[tuple[int, Any, dict[str, Any]]]]:
        for row in ds.iter_rows():
            yield pickle.loads(row["films"])

    yield from progress.track_batches(results(), total=len(films), desc=desc, unit="film")
