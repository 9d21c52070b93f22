"""Latency of the explorer's decode request through a real server, as a browser slider makes it.

    python -m mnist_vae.bench.serve_latency RUN [--requests 200]

Starts `mnist-vae serve RUN --port 0` in a subprocess, sends POST /api/decode requests one after
another from this process, over one kept-alive connection (as a browser does) and with a new
connection for each request, and prints the median, 95th percentile and maximum round trip in
milliseconds for each.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import statistics
import subprocess
import sys
import time
import urllib.request


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a run folder")
    p.add_argument("--requests", type=int, default=200, help="number of decode requests (default: 200)")
    args = p.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "mnist_vae", "serve", args.run, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = None
        deadline = time.time() + 60
        assert server.stdout is not None  # stdout=PIPE
        while url is None and time.time() < deadline:
            line = server.stdout.readline()
            if not line:
                raise SystemExit(f"server exited: {server.wait()}")
            m = re.search(r"(http://[\d.]+:\d+)/", line)
            url = m.group(1) if m else None
        if url is None:
            raise SystemExit("the server printed no address within 60 s")
        facts = json.load(urllib.request.urlopen(f"{url}/api/info", timeout=10))
        dim = facts.get("latent_dim") or facts.get("run", {}).get("latent_dim")
        rng = random.Random(0)
        bodies = [json.dumps({"z": [rng.uniform(-2, 2) for _ in range(dim)]}).encode() for _ in range(args.requests)]
        host, port = url.removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        for name, fresh in (("kept-alive connection", False), ("new connection each", True)):
            times = []
            for body in bodies:
                t = time.perf_counter()
                if fresh:
                    req = urllib.request.Request(f"{url}/api/decode", data=body, headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(req, timeout=10) as r:
                        r.read()
                else:
                    conn.request("POST", "/api/decode", body=body, headers={"Content-Type": "application/json"})
                    conn.getresponse().read()
                times.append((time.perf_counter() - t) * 1e3)
            times.sort()
            print(
                f"decode round trip, {name}, over {len(times)} requests (latent {dim}): median {statistics.median(times):.1f} ms, "
                f"p95 {times[int(0.95 * (len(times) - 1))]:.1f} ms, max {times[-1]:.1f} ms"
            )
        conn.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
