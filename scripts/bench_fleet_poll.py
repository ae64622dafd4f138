#!/usr/bin/env python3
"""What a quiet fleet costs the registry: N ``jetson-deploy agent`` processes (one per board, each on
its own root) poll one real docker-registry (TLS, htpasswd; tests/support/registry.py) for S
seconds with nothing new published.  Counted: each agent's polls (its ``--verbose`` lines) and the
requests the registry logged for it (its access log, by User-Agent), after every agent had
activated the bundle once.

    python scripts/bench_fleet_poll.py --agents 50 --seconds 120 --interval 5

Prints one JSON object: polls, registry requests (and methods) per agent, requests per poll.
Needs docker-registry, htpasswd and openssl (scripts/install_system_deps.sh).
"""
import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from support.fleet import Board, all_once, keypair, publish, signed_bundle  # noqa: E402
from support.registry import RegistryServer, registry_skip_reason  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--interval", type=float, default=5.0, help="each agent's --interval")
    args = ap.parse_args()
    why = registry_skip_reason()
    if why:
        print(why, file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="jd-bench-fleet-"))
    srv = RegistryServer.start(base / "registry")
    procs = []
    try:
        key = keypair(base, "fleet")
        ref = "{}/fleet/bench:stable".format(srv.host)
        publish(srv, signed_bundle(base, "1.0.0", key), ref)
        boards = [Board(base, "b{:03d}".format(i), ref, key["public_key"]) for i in range(args.agents)]
        first = all_once(srv, boards)
        assert {r["result"] for r in first.values()} == {"deployed"}, first
        mark = srv.mark()
        t0 = time.monotonic()
        for b in boards:
            cmd = [sys.executable, "-m", "jetson_deploy"] + b.args(srv, "--interval", str(args.interval), "--verbose")
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True,
                                          cwd=str(ROOT)))
        time.sleep(args.seconds)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        polls = {}
        for b, p in zip(boards, procs):
            err = p.communicate(timeout=120)[1]
            polls[b.id] = sum(1 for ln in err.splitlines() if " unchanged" in ln and ln.startswith("[agent]"))
        elapsed = time.monotonic() - t0
        time.sleep(1.0)  # the registry writes its access log lines after answering
        seen = srv.accesses(mark)
        per = {b.id: [a for a in seen if a.agent.endswith("board/" + b.id)] for b in boards}
        methods = sorted({(a.method, a.status) for a in seen})
        total_polls, total_req = sum(polls.values()), sum(len(v) for v in per.values())
        print(json.dumps({
            "agents": args.agents, "seconds": round(elapsed, 1), "interval": args.interval,
            "polls_total": total_polls, "registry_requests_total": total_req,
            "requests_per_poll": round(total_req / total_polls, 4) if total_polls else None,
            "polls_per_agent": {"min": min(polls.values()), "max": max(polls.values())},
            "agents_with_requests_ne_polls": sorted(k for k in polls if len(per[k]) != polls[k]),
            "methods": ["{} {}".format(m, s) for m, s in methods],
        }, indent=2))
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        srv.close()
        shutil.rmtree(str(base), ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
