"""Webhook delivery metrics: attempts by result, attempt latency, and lag (planned → delivered)."""
from prometheus_client import Counter, Histogram

ATTEMPTS = Counter("cobuy_webhook_attempts_total", "Webhook delivery attempts by result (delivered, retry, failed)",
                   ["result"])
ATTEMPT_SECONDS = Histogram("cobuy_webhook_attempt_seconds", "Duration of one webhook attempt",
                            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
LAG = Histogram("cobuy_webhook_lag_seconds", "From a webhook message planned to delivered (retries included)",
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600, 86400))
DISABLED = Counter("cobuy_webhook_endpoints_disabled_total", "Endpoints disabled after failing for the retry window")
