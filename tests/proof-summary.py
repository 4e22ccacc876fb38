#!/usr/bin/env python3
"""Totals the proof summary the tests append to (one JSON object per line, see tests/integration/util/summary.rs) and
prints the figures, ending with the one-line summary CI shows:

zero-downtime: 0 failed of N; faults: K injected, K survived; kills: M, M recovered; bad inputs: B, B clean;
secrets leaked: 0
"""

import json
import sys


def main(path):
    try:
        with open(path, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        print(f"proof summary: {path} does not exist (no proof test ran)")
        return
    by_kind = {}
    for line in lines:
        by_kind.setdefault(line.get("kind"), []).append(line)

    load = by_kind.get("zero-downtime", [])
    requests = sum(l.get("requests", 0) for l in load)
    failed = sum(l.get("failed", 0) for l in load)
    heavy = [l for l in load if "req/s during a deploy" in l.get("test", "")]

    faults = by_kind.get("faults", [])
    injected = [f for f in faults if f.get("injected")]
    survived = [f for f in injected if f.get("survived")]
    not_reached = len(faults) - len(injected)

    kills = by_kind.get("kills", [])
    killed = sum(k.get("killed", 0) for k in kills)
    recovered = sum(k.get("recovered", 0) for k in kills)

    bad = by_kind.get("bad-inputs", [])
    bad_cases = sum(b.get("cases", 0) for b in bad)
    bad_clean = sum(b.get("clean", 0) for b in bad)

    scans = by_kind.get("secrets", [])
    leaked = sum(s.get("leaked", 0) for s in scans)
    runs = len(scans)
    most_secrets = max((s.get("secrets", 0) for s in scans), default=0)

    print(f"proof summary ({path}):")
    print(f"  zero-downtime: {failed} failed of {requests} requests to production during deploys, faults and kills")
    for h in heavy:
        print(
            f"    {h['test']}: {h['failed']} failed of {h['requests']} ({h['rate']:.0f}/s, {h['slow']} slow, "
            f"{h['new_connections']} on new connections); deploy +{h['deploy_from']:.1f}s..+{h['deploy_to']:.1f}s, "
            f"first v2 answer +{h['first_v2']:.2f}s, last v1 answer +{h['last_v1']:.2f}s"
        )
    print(f"  faults: {len(injected)} injected, {len(survived)} survived"
          + (f" ({not_reached} more cases whose call the deploy did not make that time)" if not_reached else ""))
    succeeded = sum(1 for f in injected if f.get("outcome", "").startswith("out succeeded"))
    if injected:
        print(f"    the deploy with the fault: {succeeded} succeeded, {len(injected) - succeeded} failed cleanly in one line")
    print(f"  kills: {killed}, {recovered} recovered")
    for c in by_kind.get("concurrency", []):
        print(f"  concurrency: {c['puts']} simultaneous puts, {c['succeeded']} deployed in turn, "
              f"{c['failed']} failed of {c['probe_requests']} probe requests")
    print(f"  bad inputs: {bad_cases}, {bad_clean} clean")
    for s in by_kind.get("sessions", []):
        print(f"  sessions: with Redis {s['redis_visits']} visits counted on through the swap; in memory "
              f"{s['memory_last_v1']} on v1, then {s['memory_first_v2']} on v2")
    print(f"  secrets leaked: {leaked} ({runs} runs of the binaries scanned, up to {most_secrets} secrets each)")
    seeds = by_kind.get("seed", [])
    if seeds:
        print("  seeds (PROOF_SEED=<seed> replays): " + ", ".join(f"{s['what']} {s['seed']}" for s in seeds))
    print(
        f"zero-downtime: {failed} failed of {requests}; faults: {len(injected)} injected, {len(survived)} survived; "
        f"kills: {killed}, {recovered} recovered; bad inputs: {bad_cases}, {bad_clean} clean; secrets leaked: {leaked}"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/proof-summary.jsonl")
