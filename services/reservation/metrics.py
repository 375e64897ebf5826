"""reservation's metrics."""
from prometheus_client import Counter

RESERVATIONS = Counter("cobuy_reservations_total", "Reservation decisions", ["outcome"])
