"""Load on `charlstm serve`: throughput and latency against concurrent clients.

    python benchmarks/serve_load.py RUN --out benchmarks/results/serve_load-cpu-DATE.json

starts `charlstm serve RUN` on a free loopback port, warms it up (every batch
size it will use is compiled first), then sends the same requests

  - one by one (the baseline: what a server that queued its clients would do),
  - from 1, 8, 32 and 64 concurrent clients, each sending its next request
    as soon as its last is answered,

and reports characters per second over the whole round, and the p50 and p99
latency of a request (sent to fully answered). Every request asks for
`--length` characters at temperature 0.8 with its own seed, after one of four
primes. Several rounds alternate the orders; the medians are reported.

`--varied-primes` gives every request a prime of its own length instead (1,
2, 3, ... characters of the shipped corpus), as a server's clients send, and
first times one "cold" round at 32 clients in which the server meets each
length for the first time.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from machine import describe, provenance

PRIMES = ["ROMEO.\n", "To be, or not to be", "KING HENRY.\nNow, lords,", "\n"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(port: int, body: dict[str, Any]) -> tuple[float, int]:
    """(seconds, characters generated) for one request."""
    began = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request("POST", "/v1/generate", body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200, answer
    finally:
        connection.close()
    return time.perf_counter() - began, sum(len(s["text"]) for s in answer["samples"])


def _round(port: int, bodies: list[dict[str, Any]], clients: int) -> dict[str, float]:
    began = time.perf_counter()
    if clients == 0:  # one by one
        results = [_post(port, b) for b in bodies]
    else:
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda b: _post(port, b), bodies))
    wall = time.perf_counter() - began
    latencies = sorted(r[0] for r in results)
    return {
        "chars_per_s": sum(r[1] for r in results) / wall,
        "p50_s": latencies[len(latencies) // 2],
        "p99_s": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "wall_s": wall,
    }


def _compiled_ahead(port: int, deadline: float) -> None:
    """Wait until the server has compiled every batch size ahead: an idle
    server compiles the next one, and a request arriving meanwhile waits."""
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            connection.request("GET", "/v1/model")
            left = json.loads(connection.getresponse().read())["load"]["sizes_to_compile"]
        finally:
            connection.close()
        if left == 0:
            return
        assert time.monotonic() < deadline, "the server did not finish compiling its batch sizes"
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run directory or checkpoint to serve")
    parser.add_argument("--length", type=int, default=200, help="characters per request")
    parser.add_argument("--requests", type=int, default=128, help="requests per round")
    parser.add_argument("--clients", default="1,8,32,64", help="concurrent clients, comma-separated [1,8,32,64]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every client count; medians shown [3]")
    parser.add_argument("--chunk", type=int, default=None, help="the server's --chunk (default: its own)")
    parser.add_argument("--varied-primes", action="store_true", help="a prime of a new length for every request")
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = parser.parse_args()
    if not args.run.exists():
        parser.error(f"no run {args.run}: give a run directory or checkpoint (charlstm runs lists them)")
    if args.rounds < 1 or args.requests < 1:
        parser.error("--rounds and --requests must be at least 1")
    levels = [int(c) for c in args.clients.split(",")]
    port = _free_port()
    command = [sys.executable, "-m", "charlstm", "serve", str(args.run), "--port", str(port), "-q"]
    command += ["--chunk", str(args.chunk)] if args.chunk else []
    server = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/v1/model")
                about = json.loads(connection.getresponse().read())
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.2)
        primes = [PRIMES[i % len(PRIMES)] for i in range(args.requests)]
        bodies = [{"prime": p, "length": args.length, "seed": i, "temperature": 0.8} for i, p in enumerate(primes)]
        # Warm-up: the primes' programs, and every batch size up to the largest level.
        _round(port, bodies[: len(PRIMES)], 0)
        for clients in sorted(levels):
            _round(port, bodies[: 2 * clients], clients)
        _compiled_ahead(port, deadline=time.monotonic() + 300)
        cold = None
        if args.varied_primes:
            text = (Path(__file__).resolve().parent.parent / "corpora" / "shakespeare.txt").read_text(encoding="utf-8")
            primes = [text[1000 + 7 * i : 1000 + 7 * i + 1 + i] for i in range(args.requests)]  # 1, 2, 3... characters
            bodies = [{**body, "prime": prime} for body, prime in zip(bodies, primes, strict=True)]
            cold = _round(port, bodies, 32)
            print("cold, 32 clients", {k: round(v, 3) for k, v in cold.items()}, flush=True)
        rounds: dict[str, list[dict[str, float]]] = {"sequential": [], **{str(c): [] for c in levels}}
        for r in range(args.rounds):
            order = ["sequential", *map(str, levels)]
            for name in order if r % 2 == 0 else order[::-1]:
                rounds[name].append(_round(port, bodies, 0 if name == "sequential" else int(name)))
                print(name, {k: round(v, 3) for k, v in rounds[name][-1].items()}, flush=True)
    finally:
        server.terminate()
        server.wait(120)
    medians = {name: {k: statistics.median(x[k] for x in runs) for k in runs[0]} for name, runs in rounds.items()}
    base = medians["sequential"]["chars_per_s"]
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": describe(),
        "model": about["model"],
        "checkpoint": about["checkpoint"],
        "limits": about["limits"],
        "request": {
            "length": args.length,
            "temperature": 0.8,
            "primes": "varied: request i has i + 1 characters of the corpus" if args.varied_primes else PRIMES,
            "requests_per_round": args.requests,
        },
        "cold_round_32_clients": cold,
        "rounds": args.rounds,
        "medians": {name: {**m, "speedup": m["chars_per_s"] / base} for name, m in medians.items()},
        "all_rounds": rounds,
    }
    print(f"\n{about['model']}, {args.requests} requests of {args.length} characters, median of {args.rounds} rounds")
    print("| clients | chars/s | x one by one | p50 latency | p99 latency |\n|---|---|---|---|---|")
    for name, m in result["medians"].items():
        label = "one by one" if name == "sequential" else name
        row = f"| {label} | {m['chars_per_s']:,.0f} | {m['speedup']:.1f} | {m['p50_s']:.3f} s | {m['p99_s']:.3f} s |"
        print(row)
    if args.out:
        args.out.write_text(json.dumps({**provenance(), **result}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
