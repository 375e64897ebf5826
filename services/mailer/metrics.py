"""mailer's metrics."""
from prometheus_client import Counter

MAILS = Counter("cobuy_mails_total", "Mail delivery attempts by result", ["result"])
PRICE_DROP_RECIPIENTS = Counter("cobuy_price_drop_recipients_total",
                                "Purchasers planned a price-drop mail (SPEC §10), summed over windows")
