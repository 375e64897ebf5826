"""auction: the holding condition, counter-offers, the comparison and interception,
the invitation and close steps on their dates."""
SERVICE = "auction"
