"""Prometheus metrics of the plumbing (HTTP, events, outbox), and their endpoint. Each service
defines its own metrics in its own folder. Under gunicorn, PROMETHEUS_MULTIPROC_DIR makes them
sum across workers."""
from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter("cobuy_http_requests_total", "HTTP requests", ["route", "method", "status"])
HTTP_LATENCY = Histogram(
    "cobuy_http_request_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_PUBLISHED = Counter("cobuy_events_published_total", "Events published from the outbox")
EVENTS_CONSUMED = Counter("cobuy_events_consumed_total", "Events applied by a consumer", ["type"])
EVENTS_DUPLICATE = Counter("cobuy_events_duplicate_total", "Redelivered events skipped by the inbox", ["type"])
EVENTS_DEAD = Counter("cobuy_events_dead_lettered_total", "Events sent to the dead-letter queue", ["type"])
OUTBOX_PENDING = Gauge("cobuy_outbox_pending", "Unsent outbox events", multiprocess_mode="livemax")
BROKER_CONNECTED = Gauge("cobuy_broker_connected", "1 while the relay's last publish or heartbeat reached the broker",
                         multiprocess_mode="livemin")
OUTBOX_QUARANTINED = Gauge("cobuy_outbox_quarantined", "Outbox events set aside as unpublishable (cobuy outbox retry)",
                           multiprocess_mode="livemax")
OUTBOX_LAG = Gauge("cobuy_outbox_oldest_unsent_seconds", "Age of the oldest unsent outbox event",
                   multiprocess_mode="livemax")


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
