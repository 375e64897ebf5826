"""CPU per proxied reservation in the gateway alone: `python bench/gateway_cpu.py [seconds]`.

The gateway (one gunicorn worker, as `cobuy up` runs it) in front of a stand-in reservation service
that answers 201 at once, driven by wrk with B1's script; the gateway worker's CPU seconds (from
/proc) over the requests it served. The stand-in's and wrk's CPU are not counted."""
from __future__ import annotations

import argparse
import os
import re
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

UPSTREAM = '''
import sys
from aiohttp import web
BODY = b'{"cancel_token":"0123456789abcdef0123456789abcdef01234567","id":"6f1c0b7e-0000-4000-8000-000000000000","offer_id":"o","status":"active"}\\n'
async def reserve(request):
    await request.read()
    return web.Response(body=BODY, status=201, headers={"Content-Type": "application/json",
                        "X-Correlation-Id": request.headers.get("X-Correlation-Id", "")})
app = web.Application()
app.router.add_route("*", "/{tail:.*}", reserve)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''


def free_port_block() -> int:
    from tests.infra import free_port_block as block

    return block()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def wait_for_port(port: int, seconds: float = 30) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("seconds", nargs="?", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    port = free_port_block()
    from shared.config import SERVICE_PORT_OFFSET

    upstream_port = port + SERVICE_PORT_OFFSET["reservation"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBUY_")}
    env.update({"COBUY_HTTP_PORT": str(port), "COBUY_LOG_LEVEL": "WARNING", "COBUY_DATA_DIR": f"/tmp/gateway-cpu-{port}"})
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(upstream_port)], env=env)
    from cobuy.supervisor import gunicorn_argv

    gateway = subprocess.Popen(gunicorn_argv("gateway", 1, f"127.0.0.1:{port}", log_level="warning"), cwd=ROOT,
                               env=env)
    try:
        wait_for_port(upstream_port)
        wait_for_port(port)
        time.sleep(1)
        [worker] = children(gateway.pid)
        url = f"http://127.0.0.1:{port}"
        path = "/api/v1/offers/6f1c0b7e-0000-4000-8000-000000000001/reservations"
        subprocess.run(["wrk", "-t1", "-c8", "-d2s", "-s", str(ROOT / "bench" / "reserve.lua"), url, "--", path, "warm"],
                       capture_output=True)
        before = cpu_seconds(worker)
        out = subprocess.run(["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "-s",
                              str(ROOT / "bench" / "reserve.lua"), url, "--", path, "g"],
                             capture_output=True, text=True).stdout
        used = cpu_seconds(worker) - before
        result = json.loads(re.search(r"WRK_JSON (\{.*\})", out).group(1))
        errors = result["non2xx"] + result["connect_errors"] + result["read_errors"] + result["timeouts"]
        print(f"{result['requests']} requests ({errors} errors): gateway {used / result['requests'] * 1000:.3f} ms CPU "
              f"each, {result['requests'] / args.seconds:.0f}/s, p99 {result['p99_ms']:.1f} ms")
    finally:
        for process in (gateway, upstream):
            process.terminate()
            process.wait(timeout=20)


if __name__ == "__main__":
    main()
