"""Store engines compared: bridge CPU and latency per WS-Trust login on SQLite and on PostgreSQL, in one run.

A first slice of the cluster benchmark: it runs ``bench/login.py`` (the simulator and the bridge as
their own processes, bridge CPU from /proc) twice, once on the default SQLite store and once with
``LOGINBRIDGE_STORE_URL`` pointing at a throwaway PostgreSQL 15 started here (the tests' starter in
``tests/servers/postgres.py``: initdb/pg_ctl as the ``postgres`` user, Unix socket, fsync off), and
prints both and the ratio (issue target: PostgreSQL at most 1.3x SQLite per login).

Not yet here: three instances behind HAProxy, round trips per login, the /healthz probe at a steady
rate, the attacker scenario.

Run from the repository root: ``.venv/bin/python bench/cluster.py [--n 300 --concurrency 8]``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.servers.postgres import run_postgres  # noqa: E402 (after the path is set)

CPU_LINE = re.compile(r"\[(?P<label>[^\]]+)\] bridge: CPU .*?= (?P<ms>[0-9.]+) ms per login")
LATENCY_LINE = re.compile(r"\[(?P<label>[^\]]+)\] bridge: latency p50 (?P<p50>[0-9.]+) ms, p95 (?P<p95>[0-9.]+) ms")
RATE_LINE = re.compile(r"\[(?P<label>[^\]]+)\] bridge: (?P<ok>\d+)/(?P<n>\d+) logins OK .*= (?P<rate>[0-9.]+) logins/s")


def login_bench(store_url: str | None, n: int, concurrency: int) -> dict[str, float]:
    """One bench/login.py WS-Trust run; its bridge figures."""
    env = dict(os.environ)
    env.pop("LOGINBRIDGE_STORE_URL", None)
    if store_url is not None:
        env["LOGINBRIDGE_STORE_URL"] = store_url
    argv = [sys.executable, str(REPO / "bench" / "login.py"), "--protocol", "wstrust", "--n", str(n),
            "--concurrency", str(concurrency), "--validate-n", "1", "--pysaml2-n", "1"]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    out = done.stdout + done.stderr
    cpu, latency, rate = CPU_LINE.search(out), LATENCY_LINE.search(out), RATE_LINE.search(out)
    if done.returncode not in (0, 1) or cpu is None or latency is None or rate is None:
        raise SystemExit(f"bench/login.py failed (exit {done.returncode}):\n{out[-3000:]}")
    if rate["ok"] != rate["n"]:
        raise SystemExit(f"only {rate['ok']}/{rate['n']} logins succeeded:\n{out[-3000:]}")
    return {"cpu_ms": float(cpu["ms"]), "p50": float(latency["p50"]), "p95": float(latency["p95"]),
            "rate": float(rate["rate"])}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=300, help="measured logins per engine (default 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="logins in flight (default 8)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.concurrency < 1:
        print("--n and --concurrency must be at least 1", file=sys.stderr)
        return 2
    print(f"loginbridge store benchmark: WS-Trust user-prompt logins, N={args.n}, C={args.concurrency}, "
          f"{os.cpu_count()} CPUs")
    sqlite = login_bench(None, args.n, args.concurrency)
    with run_postgres() as server:
        database = server.create_database()
        postgres = login_bench(database.url, args.n, args.concurrency)
    for name, figures in (("SQLite", sqlite), ("PostgreSQL 15 (Unix socket)", postgres)):
        print(f"{name}: {figures['cpu_ms']:.2f} ms bridge CPU per login, {figures['rate']:.1f} logins/s, "
              f"p50 {figures['p50']:.1f} ms, p95 {figures['p95']:.1f} ms")
    ratio = postgres["cpu_ms"] / sqlite["cpu_ms"]
    verdict = "MET" if ratio <= 1.3 else "MISSED"
    print(f"ratio PostgreSQL/SQLite bridge CPU per login: {ratio:.2f} -> target (<= 1.30) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
