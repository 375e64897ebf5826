"""cobuy's infrastructure: config, db, messaging, outbox/inbox, logging, web plumbing, clock.

No business rule lives here (STYLE.md, habit 4).
"""
