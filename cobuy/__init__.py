"""The `cobuy` command: start the whole system, and the operator's tools."""
