"""auction's metrics."""
from prometheus_client import Counter, Histogram

COUNTER_OFFERS = Counter("cobuy_counter_offers_total", "Counter-offers by verdict", ["outcome"])
STEP_LATENESS = Histogram(
    "cobuy_step_lateness_seconds",
    "Dated step (invitation, close) lateness behind its instant",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 2, 5, 10),
)
