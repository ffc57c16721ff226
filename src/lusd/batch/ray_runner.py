"""Ray backend: one actor per worker slot, the model loaded once per actor.

The driver reads each input image, sends its bytes to an actor, and streams
results back as they finish (``ray.wait``) into the single journal writer
(``BatchRun.commit``). Actors return PNG bytes, so workers on other machines
need no shared file system; only the model must be loadable there. With ``--group N``
an actor gets up to N rows of one config at a time and runs them in one pipeline call.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from lusd.batch.execute import JobOutput, PipelineFactory, execute, execute_group, worker_name
from lusd.batch.jobs import JobSpec, group_jobs
from lusd.errors import DeviceError, ImageInputError, ModelLoadError

if TYPE_CHECKING:
    from lusd.batch.batch_run import BatchRun, BatchSummary, Progress

log = logging.getLogger(__name__)

#: Tasks (a job, or a group of jobs) queued per actor beyond the one running (hides the
#: transfer latency).
PREFETCH = 1


class EditActor:
    """Holds one pipeline for its whole life (the model is loaded once)."""

    def __init__(self, factory: PipelineFactory) -> None:
        self.pipe = factory()
        self.name = worker_name()

    def run(self, job: JobSpec, image_bytes: bytes) -> JobOutput:
        return execute(self.pipe, job, image_bytes)

    def run_group(self, jobs: list[JobSpec], images: list[bytes]) -> list[JobOutput]:
        """Jobs of one config in one pipeline call; each fails alone (``execute_group``)."""
        return execute_group(self.pipe, jobs, images)

    def ready(self) -> str:
        return self.name


def _connect(address: str | None, workers: int) -> Any:
    try:
        import ray
    except ImportError:
        raise DeviceError(
            "the ray backend needs Ray: pip install 'lusd[ray]' (ray[default]==2.60.0)"
        ) from None
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return ray


def run_on_ray(
    run: BatchRun,
    todo: list[JobSpec],
    factory: PipelineFactory,
    progress: Progress | None,
    summary: BatchSummary,
) -> None:
    opts = run.opts
    ray = _connect(opts.address, opts.workers)
    gpus = float(ray.cluster_resources().get("GPU", 0))
    per_actor = {"num_cpus": 1, "num_gpus": 1 if gpus >= opts.workers else 0}
    log.info("ray: %d actor(s) with %s", opts.workers, per_actor)
    actor_cls = ray.remote(**per_actor)(EditActor)
    actors = [actor_cls.remote(factory) for _ in range(opts.workers)]
    _wait_ready(ray, actors)
    queue = deque(group_jobs(todo, opts.group))
    in_flight: dict[Any, tuple[Any, list[JobSpec]]] = {}
    load: dict[Any, int] = dict.fromkeys(actors, 0)
    finished = 0

    def submit(actor: Any) -> None:
        while queue and load[actor] <= PREFETCH:
            jobs, images = [], []
            for job in queue.popleft():
                try:
                    data = run.read_input(job)
                except ImageInputError as exc:
                    run.start(job, "driver")
                    _record(job, JobOutput(job.id, False, 0.0, error=f"ImageInputError: {exc}"))
                    continue
                run.start(job, "ray")
                jobs.append(job)
                images.append(data)
            if not jobs:
                continue
            if len(jobs) == 1:
                task = actor.run.remote(jobs[0], images[0])
            else:
                task = actor.run_group.remote(jobs, images)
            in_flight[task] = (actor, jobs)
            load[actor] += 1

    def _record(job: JobSpec, out: JobOutput) -> None:
        nonlocal finished
        ok = run.commit(job, out)
        summary.done += ok
        summary.failed += not ok
        finished += 1
        if progress:
            progress(finished, len(todo), job.id, ok)

    replaced: dict[Any, Any] = {}
    try:
        for actor in actors:
            submit(actor)
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            owner, jobs = in_flight.pop(ready[0])
            if owner in load:
                load[owner] -= 1
            try:
                result = ray.get(ready[0])
                outs = result if isinstance(result, list) else [result]
            except ray.exceptions.RayActorError as exc:
                outs = [
                    JobOutput(job.id, False, 0.0, error=f"worker died: {_short(exc)}")
                    for job in jobs
                ]
                if owner not in replaced:
                    log.warning("ray worker died; starting a new one")
                    replaced[owner] = actor_cls.remote(factory)
                    load.pop(owner, None)
                    load[replaced[owner]] = 0
            except ray.exceptions.RayError as exc:
                outs = [JobOutput(job.id, False, 0.0, error=f"ray: {_short(exc)}") for job in jobs]
            for job, out in zip(jobs, outs, strict=True):
                _record(job, out)
            submit(replaced.get(owner, owner))
    finally:
        for actor in list(load):
            ray.kill(actor)


def _wait_ready(ray: Any, actors: list) -> None:
    """Wait until every actor has loaded its model; a load failure is one clear error."""
    try:
        names = ray.get([a.ready.remote() for a in actors])
    except ray.exceptions.RayActorError as exc:
        for actor in actors:
            ray.kill(actor)
        lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
        raise ModelLoadError(f"a Ray worker could not load the model: {lines[-1]}") from None
    log.info("ray workers ready: %s", ", ".join(names))


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300]
