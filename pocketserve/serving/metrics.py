"""One Metrics object per app, on its own CollectorRegistry (never prometheus' global one), so
two apps in one process (tests) never share counters.

Request-path numbers are recorded as they happen; per-worker facts (state, memory, restarts,
what the worker itself says it is running) are read at scrape time from a snapshot callback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BATCH = (1, 2, 4, 8, 16, 32, 64)
_RATE = (1, 5, 10, 25, 50, 100, 250, 500, 1000)
_SESSION = (0.1, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass
class WorkerSnapshot:
    model: str
    state: str
    memory_bytes: int
    restarts: int
    active: int  # requests the worker process says it is running
    events: int  # data events (tokens, for text) the worker process has emitted
    cpu: dict[str, Any] | None = None  # its part of the CPU plan, and time it waited


class _WorkerCollector(Collector):
    def __init__(self, snapshot: Callable[[], list[WorkerSnapshot]]):
        self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        memory = GaugeMetricFamily("pocketserve_worker_memory_bytes",
                                   "Resident memory of each model's worker process.",
                                   labels=["model"])
        state = GaugeMetricFamily("pocketserve_model_state",
                                  "1 for the state each model is in.", labels=["model", "state"])
        restarts = CounterMetricFamily("pocketserve_worker_restarts",
                                       "Times a crashed worker was restarted.", labels=["model"])
        active = GaugeMetricFamily("pocketserve_worker_active_sequences",
                                   "Requests the worker process is running now.",
                                   labels=["model"])
        events = CounterMetricFamily("pocketserve_worker_generated_events",
                                     "Events (tokens for text) the current worker emitted.",
                                     labels=["model"])
        snaps = self._snapshot()
        for snap in snaps:
            memory.add_metric([snap.model], snap.memory_bytes)
            state.add_metric([snap.model, snap.state], 1)
            restarts.add_metric([snap.model], snap.restarts)
            active.add_metric([snap.model], snap.active)
            events.add_metric([snap.model], snap.events)
        yield from (memory, state, restarts, active, events)
        yield from _cpu_metrics(snaps)


def _cpu_metrics(snaps: list[WorkerSnapshot]) -> Iterable[Metric]:
    threads = GaugeMetricFamily("pocketserve_cpu_threads",
                                "CPU threads the plan gives each model's worker.",
                                labels=["model"])
    weight = GaugeMetricFamily("pocketserve_cpu_weight", "Slice weight of each model when "
                               "several are busy, by its priority.", labels=["model", "priority"])
    wait = CounterMetricFamily("pocketserve_cpu_wait_seconds", "Time each model was held "
                               "paused while it had work, so that others could run.",
                               labels=["model"])
    for snap in snaps:
        if snap.cpu is None:
            continue
        threads.add_metric([snap.model], snap.cpu["threads"])
        weight.add_metric([snap.model, snap.cpu["priority"]], snap.cpu["weight"])
        wait.add_metric([snap.model], snap.cpu["wait_s"])
    yield from (threads, weight, wait)


class Metrics:
    """Every series the server exports. Built by create_app and injected where needed."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("pocketserve_requests", "HTTP requests answered.",
                                ["route", "model", "status"], registry=r)
        self.latency = Histogram("pocketserve_request_duration_seconds",
                                 "Time from request to the end of the answer.",
                                 ["route", "model"], buckets=_LATENCY, registry=r)
        self.queue_depth = Gauge("pocketserve_queue_depth", "Requests waiting for a slot.",
                                 ["model"], registry=r)
        self.in_flight = Gauge("pocketserve_in_flight", "Requests holding a slot.",
                               ["model"], registry=r)
        self.queue_wait = Histogram("pocketserve_queue_wait_seconds",
                                    "Time a request waited for a slot.", ["model"],
                                    buckets=_LATENCY, registry=r)
        self.rejected = Counter("pocketserve_rejected", "Requests refused or stopped early.",
                                ["model", "reason"], registry=r)
        self.ttft = Histogram("pocketserve_time_to_first_token_seconds",
                              "Time from admission to the first event from the model.",
                              ["model"], buckets=_LATENCY, registry=r)
        self.input_tokens = Counter("pocketserve_input_tokens", "Prompt tokens processed.",
                                    ["model"], registry=r)
        self.output_tokens = Counter("pocketserve_output_tokens", "Tokens generated.",
                                     ["model"], registry=r)
        self.tokens_per_s = Histogram("pocketserve_output_tokens_per_second",
                                      "Generation speed of each request after its first token.",
                                      ["model"], buckets=_RATE, registry=r)
        self.batch_size = Histogram("pocketserve_batch_size",
                                    "Requests in flight on the model when one is admitted.",
                                    ["model"], buckets=_BATCH, registry=r)
        self.loads = Counter("pocketserve_model_loads", "Model loads by outcome.",
                             ["model", "outcome"], registry=r)
        self.load_time = Histogram("pocketserve_model_load_seconds",
                                   "Time to start a worker, load and warm up a model.",
                                   ["model"], buckets=_LATENCY, registry=r)
        self.unloads = Counter("pocketserve_model_unloads", "Model unloads by reason.",
                               ["model", "reason"], registry=r)
        self.ws_open = Gauge("pocketserve_websocket_connections_open",
                             "WebSocket connections accepted and not yet closed.", ["route"],
                             registry=r)
        self.ws_connections = Counter(
            "pocketserve_websocket_connections", "WebSocket handshakes by outcome: accepted, "
            "or why refused (unauthorized, rate_limited, connection_limit, ...).",
            ["route", "outcome"], registry=r)
        self.ws_duration = Histogram("pocketserve_websocket_connection_duration_seconds",
                                     "Time from accept to close of each WebSocket connection.",
                                     ["route"], buckets=_SESSION, registry=r)

    def watch_workers(self, snapshot: Callable[[], list[WorkerSnapshot]]) -> None:
        self.registry.register(_WorkerCollector(snapshot))

    def render(self) -> bytes:
        return generate_latest(self.registry)
