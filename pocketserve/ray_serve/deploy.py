"""`pocketserve serve --ray`: connect to (or start) Ray, deploy one Ray Serve application per
model, and hand the HTTP app a worker factory that reaches them.

Each model is an application named `pocketserve-<id>` holding one deployment named after the
model, with `num_replicas` from `--replicas MODEL=N` / `ray_replicas`, or an
`autoscaling_config` from `ray_autoscaling` (Ray Serve's own keys: min_replicas,
max_replicas, target_ongoing_requests, ...). Ray's HTTP proxy is not started: this process's
app is the ingress, with every route, key, limit and metric of the plain server. Replicas ask
Ray for `ray_num_cpus_per_replica` CPUs (default 0: a small machine fits every model; the
workers' threads still come from the CPU plan).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pocketserve.catalog import Catalog
from pocketserve.config import ModelSpec, Settings
from pocketserve.ray_serve.replica import ModelReplica
from pocketserve.ray_serve.worker import RayWorker
from pocketserve.serving.cpu import CpuPlan
from pocketserve.serving.worker import WorkerOptions

log = logging.getLogger("pocketserve.ray")
NAMESPACE = "pocketserve"


def app_name(model_id: str) -> str:
    return f"pocketserve-{model_id}"


class RayDeployment:
    """The Ray side of one server: what it deployed, so that it can take it down again."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.apps: list[str] = []
        self.started_ray = False

    def deploy(self) -> Callable[[ModelSpec, WorkerOptions], RayWorker]:
        import ray
        from ray import serve as ray_serve

        serve: Any = ray_serve  # its decorators' types do not say what they return
        s = self.settings
        if not ray.is_initialized():
            ray.init(address=s.ray_address, namespace=NAMESPACE, log_to_driver=False,
                     include_dashboard=False if s.ray_address is None else None)
            self.started_ray = s.ray_address is None
        serve.start(proxy_location="Disabled")
        catalog, plan = Catalog(s.extra_models), CpuPlan(threads=s.threads)
        for name in s.models:
            spec = catalog.find(name)
            options = {"threads": plan.threads(spec), "start_timeout_s": s.worker_start_timeout_s,
                       "max_backoff_s": s.worker_restart_max_backoff_s,
                       "cache_dir": str(s.cache_dir), "log_level": s.log_level}
            deployment = serve.deployment(ModelReplica, name=spec.id).options(
                ray_actor_options={"num_cpus": s.ray_num_cpus_per_replica},
                health_check_period_s=5, graceful_shutdown_timeout_s=10,
                **self._scale(spec))
            serve.run(deployment.bind(spec.model_dump_json(), options), name=app_name(spec.id),
                      route_prefix=None, blocking=False)
            self.apps.append(app_name(spec.id))
            log.info("deployed %s on Ray Serve (%s)", spec.id, self._scale(spec))

        def worker(spec: ModelSpec, options: WorkerOptions) -> RayWorker:
            return RayWorker(spec, app_name(spec.id), options.start_timeout_s)
        return worker

    def _scale(self, spec: ModelSpec) -> dict[str, Any]:
        s = self.settings
        for name in (spec.id, *spec.aliases):
            if name in s.ray_autoscaling:
                return {"autoscaling_config": dict(s.ray_autoscaling[name])}
        replicas = next((s.ray_replicas[n] for n in (spec.id, *spec.aliases)
                         if n in s.ray_replicas), 1)
        return {"num_replicas": replicas}

    def teardown(self) -> None:
        """Delete what this server deployed; stop Ray if this server started it."""
        import ray
        from ray import serve as ray_serve

        serve: Any = ray_serve
        for name in self.apps:
            try:
                serve.delete(name)
            except Exception:
                log.exception("could not delete the Ray Serve application %s", name)
        self.apps.clear()
        if self.started_ray:
            serve.shutdown()
            ray.shutdown()
