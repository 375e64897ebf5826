"""mailer's metrics."""
from prometheus_client import Counter

MAILS = Counter("cobuy_mails_total", "Mail delivery attempts by result", ["result"])
