"""The ``--ray`` options the scoring commands share (``score``, ``bench --data``, ``validate``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from edgevcf.scale import RayPlan


def ray_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--ray [auto|ADDRESS]``, ``--ray-actors``, ``--ray-threads``, ``--ray-actor-cpus``,
    given to the command as one ``ray`` argument: a :class:`~edgevcf.scale.RayPlan`, or None."""

    @functools.wraps(f)
    def with_plan(*args: Any, **kw: Any) -> Any:
        plan = ray_plan(kw.pop("ray_address"), kw.pop("ray_actors"), kw.pop("ray_threads"),
                        kw.pop("ray_actor_cpus"))  # fmt: skip
        return f(*args, ray=plan, **kw)

    g: Callable[..., Any] = with_plan
    for opt in reversed([
        click.option(
            "--ray", "ray_address", is_flag=False, flag_value="auto", default=None,
            metavar="[auto|ADDRESS]",
            help="Score on a Ray cluster (pip install 'edgevcf[ray]'): auto = the running "
            "cluster, else a local Ray on this machine's cores; or HOST:PORT. Every node must "
            "see the films and the bundle at the same paths.",
        ),
        click.option("--ray-actors", type=click.IntRange(min=1), default=None,
                      help="Engine actors (each loads the model once) [default: the cluster's "
                      "CPUs / --ray-threads]."),
        click.option("--ray-threads", type=click.IntRange(min=1), default=2, show_default=True,
                     help="Engine threads per actor."),
        click.option("--ray-actor-cpus", type=click.FloatRange(min=0, min_open=True),
                     default=0.5, show_default=True,
                     help="CPUs Ray reserves per actor; below --ray-threads leaves the read "
                     "tasks CPUs to run on."),
    ]):  # fmt: skip
        g = opt(g)
    return g


def ray_plan(
    ray_address: str | None, ray_actors: int | None, ray_threads: int, ray_actor_cpus: float
) -> RayPlan | None:
    """The plan the options describe, or None (one process)."""
    if ray_address is None:
        return None
    from edgevcf.scale import RayPlan

    debug = bool(click.get_current_context().find_root().params.get("debug"))
    return RayPlan(address=ray_address, actors=ray_actors, threads=ray_threads,
                   actor_cpus=ray_actor_cpus, debug=debug)  # fmt: skip
