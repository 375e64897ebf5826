"""gunicorn settings shared by every service: metrics stay correct as workers come and go."""
from shared import metrics


def child_exit(server, worker):
    metrics.mark_process_dead(worker.pid)
