#!/usr/bin/env python3
"""A bounded HTTP load client that counts every failed request.

    loadclient.py URL [--clients 4] [--seconds 10] [--max-requests N] [--stop-file F]
                      [--ready-file F] [--extract REGEX] [--json]

Each client opens a new connection per request (as a browser behind a balancer does),
sends GET, and reads the whole answer. A request fails when the connection is refused or
reset, times out (2 s), or the status is not 200. It records, per request, when it
started and ended, its latency, and what the answer says (the first group of --extract's
regular expression in the body, else the body's first line), so the report says:
requests, failures (with their reasons), the longest gap with no successful answer, p50/p99
latency, and how many answers each distinct body had (the version served).

The run is bounded: it ends after --seconds, after --max-requests in total, or as soon as
--stop-file exists. Targets must be loopback or the project's own test hosts.
"""
import argparse
import http.client
import json
import os
import sys
import threading
import time
import re
import urllib.parse


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--stop-file")
    parser.add_argument("--ready-file", help="created once the first request has succeeded")
    parser.add_argument("--extract", help="a regular expression; its first group names an answer (e.g. the version)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    url = urllib.parse.urlsplit(args.url)
    host, port = url.hostname, url.port or 80
    path = url.path or "/"
    pattern = re.compile(args.extract) if args.extract else None

    def name(body):
        text = body.decode("utf-8", "replace")
        if pattern:
            match = pattern.search(text)
            return match.group(1) if match else "no match: " + text.strip()[:60]
        lines = text.strip().splitlines()
        return lines[0] if lines else ""

    lock = threading.Lock()
    records = []  # (start, end, ok, body-or-reason)
    deadline = time.monotonic() + args.seconds
    stop = threading.Event()

    def client():
        while not stop.is_set():
            if time.monotonic() >= deadline or (args.stop_file and os.path.exists(args.stop_file)):
                stop.set()
                break
            start = time.monotonic()
            ok, what = False, ""
            try:
                conn = http.client.HTTPConnection(host, port, timeout=2)
                conn.request("GET", path, headers={"Connection": "close"})
                response = conn.getresponse()
                body = response.read()
                conn.close()
                ok = response.status == 200
                what = name(body) if ok else f"status {response.status}"
            except Exception as error:  # noqa: BLE001 - every failure is counted with its reason
                what = f"{type(error).__name__}: {error}"
            end = time.monotonic()
            with lock:
                records.append((start, end, ok, what))
                if len(records) >= args.max_requests:
                    stop.set()
                if ok and args.ready_file and not os.path.exists(args.ready_file):
                    try:
                        open(args.ready_file, "w").close()
                    except OSError:
                        stop.set()  # whoever asked for it is gone

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    records.sort()
    failures = [r for r in records if not r[2]]
    successes = [r for r in records if r[2]]
    latencies = sorted((r[1] - r[0]) * 1000 for r in successes)

    def percentile(values, p):
        if not values:
            return None
        return round(values[min(len(values) - 1, int(len(values) * p))], 2)

    # The longest time during which no request that succeeded ended.
    ends = sorted(r[1] for r in successes)
    gap = 0.0
    if records:
        first = records[0][0]
        points = [first] + ends + [max(r[1] for r in records)]
        gap = max((b - a) for a, b in zip(points, points[1:])) * 1000 if len(points) > 1 else 0.0
    bodies = {}
    for r in successes:
        bodies[r[3]] = bodies.get(r[3], 0) + 1
    reasons = {}
    for r in failures:
        reasons[r[3]] = reasons.get(r[3], 0) + 1
    report = {
        "requests": len(records),
        "failed": len(failures),
        "failureReasons": reasons,
        "longestGapMs": round(gap, 2),
        "p50Ms": percentile(latencies, 0.50),
        "p99Ms": percentile(latencies, 0.99),
        "seconds": round((records[-1][1] - records[0][0]) if records else 0, 3),
        "bodies": bodies,
        # The order in which the bodies were first and last seen.
        "sequence": sequence(successes),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0


def sequence(successes):
    """Distinct bodies in the order answers ended, consecutive repeats collapsed."""
    out = []
    for r in sorted(successes, key=lambda r: r[1]):
        if not out or out[-1] != r[3]:
            out.append(r[3])
    return out[:50]


if __name__ == "__main__":
    sys.exit(main())
