"""catalog: sellers, offers, the home page and its read model."""
SERVICE = "catalog"
