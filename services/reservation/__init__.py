"""reservation: purchase applications and the reservation count."""
SERVICE = "reservation"
