"""Acceptance check against a running `make demo`: a device retrying a stale password spares the IdP.

A user-prompt device sends one wrong password for a user N times (default 50);
the script prints the simulator's WS-Trust call count (GET /_sim/stats, over
TLS trusting the simulator's CA) before and after, the answers the device got,
and the tenant's configured threshold.  Exit status 1 if the IdP saw more calls
than the threshold.  ``--distinct`` sends a different wrong password each time
(then the per-user throttle, not the stale-password guard, is what stops them).

    .venv/bin/python bench/stale_password.py [--retries 50] [--distinct]
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import secrets
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bridge.config import load_config  # noqa: E402


def sim_trust_calls(sim_url: str, ca_file: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(f"{sim_url}/_sim/stats", context=context, timeout=10) as resp:
        counters = json.load(resp)["counters"]
    return int(counters.get("trust13", 0)) + int(counters.get("trust2005", 0))


def user_prompt(bridge_url: str, device: str, email: str, password: str) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"email": email, "password": password}).encode()
    request = urllib.request.Request(f"{bridge_url}/v1/mfp/user-prompt", data=body, method="POST", headers={
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(device.encode()).decode(),
    })
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bridge", default="http://127.0.0.1:8080")
    parser.add_argument("--sim", default="https://127.0.0.1:9443")
    parser.add_argument("--ca", type=Path, default=REPO / "state" / "idp-sim" / "ca.pem")
    parser.add_argument("--config", type=Path, default=REPO / "conf" / "bridge.yaml")
    parser.add_argument("--device", default="demo-mfp:demo-mfp-secret", help="device_id:secret (user-prompt mode)")
    parser.add_argument("--email", default="alice@example.com")
    parser.add_argument("--retries", type=int, default=50)
    parser.add_argument("--distinct", action="store_true", help="a different wrong password on every retry")
    args = parser.parse_args(argv)

    config = load_config(args.config, require_files=False)
    tenant = config.tenant_for_domain(args.email.rsplit("@", 1)[-1])
    if tenant is None:
        print(f"no tenant owns {args.email}", file=sys.stderr)
        return 2
    threshold = tenant.throttle.user_failures
    stale = "stale-" + secrets.token_urlsafe(8)  # wrong, and new on each run of the script

    before = sim_trust_calls(args.sim, args.ca)
    answers: collections.Counter[str] = collections.Counter()
    for i in range(args.retries):
        password = f"{stale}-{i}" if args.distinct else stale
        status, body = user_prompt(args.bridge, args.device, args.email, password)
        answers[f"{status} {body.get('error', 'ok')}"] += 1
    after = sim_trust_calls(args.sim, args.ca)

    calls = after - before
    print(f"tenant {tenant.id}: user_failures threshold = {threshold} "
          f"(window {int(tenant.throttle.window.total_seconds())} s, stale-password TTL "
          f"{int(tenant.throttle.stale_password_ttl.total_seconds())} s)")
    print(f"{args.retries} retries of {'distinct wrong passwords' if args.distinct else 'one wrong password'} "
          f"for {args.email} from device {args.device.split(':', 1)[0]}")
    print(f"simulator trust calls: before {before}, after {after}: {calls} reached the IdP")
    for answer, count in sorted(answers.items()):
        print(f"  answered {answer}: {count}x")
    ok = calls <= threshold
    print("OK: at most the threshold reached the IdP" if ok else "FAIL: more IdP calls than the threshold")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
