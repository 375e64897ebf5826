"""Does the sign-in page's timing tell which addresses are registered? (SPEC §9, ADR 10)

Against a running cobuy (`cobuy up`, COBUY_RATE_LIMIT=off), interleaves sign-in requests for a
registered address and for unknown ones, each as a browser would send it (its form's CSRF token
first), and prints the median and 90th percentile of each and their difference.

    python bench/sign_in_timing.py http://127.0.0.1:8080 [rounds]
"""
from __future__ import annotations

import re
import statistics
import sys
import time
import uuid

import requests

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def timed_request(base: str, email: str) -> float:
    browser = requests.Session()
    token = CSRF.search(browser.get(f"{base}/sellers/sign-in", timeout=30).text).group(1)
    started = time.perf_counter()
    answer = browser.post(f"{base}/sellers/sign-in", data={"email": email, "csrf_token": token}, timeout=30)
    elapsed = time.perf_counter() - started
    assert answer.status_code == 200, answer.status_code
    return elapsed * 1000


def main() -> None:
    base, rounds = sys.argv[1].rstrip("/"), int(sys.argv[2]) if len(sys.argv) > 2 else 200
    known = f"timing-{uuid.uuid4().hex[:8]}@example.com"
    requests.post(f"{base}/api/v1/sellers", json={"name": "Timing", "email": known}, timeout=30).raise_for_status()
    times: dict[str, list[float]] = {"registered": [], "unknown": []}
    for _ in range(rounds):
        times["registered"].append(timed_request(base, known))
        times["unknown"].append(timed_request(base, f"nobody-{uuid.uuid4().hex[:8]}@example.com"))
    for kind, values in times.items():
        values.sort()
        print(f"{kind:>10}: median {statistics.median(values):6.2f} ms, p90 {values[int(len(values) * 0.9)]:6.2f} ms")
    print(f"difference of medians: {statistics.median(times['registered']) - statistics.median(times['unknown']):+.2f} ms")


if __name__ == "__main__":
    main()
