"""CPU per OpenID Connect ID token: the bridge's validation against PyJWT's, in process.

For each algorithm asked (RS256 and ES256 by default; PS256 and EdDSA too), the
bench makes a signing key, a JWK Set of three public keys (the previous key,
the signing one, the next one: providers rotate, so the right key is not the
first) and one realistic ID token (Entra- and Keycloak-like claims, about
1.7-2 KB).  Then, in this process:

- the bridge: ``parse_jwks`` once, then ``verify_id_token`` (nonce expected)
  + ``identify`` per validation;
- PyJWT (the reference): ``PyJWKSet`` from the same JWK Set JSON once, then per
  validation the unverified header's kid looked up in it, ``jwt.decode`` with
  the algorithm, audience, issuer and leeway, the azp and the nonce compared;
- the floor: cryptography's ``verify`` of the signature alone (no parsing, no
  claims), what neither library can go under.

Before timing, the bridge and PyJWT must both accept the genuine token (and
name the same user) and both refuse, for its signature, a copy whose payload
has one character changed and is re-encoded; if not, the comparison is void
and the run exits 1.  CPU is ``time.process_time()``; the rounds alternate
bridge and PyJWT so that other work on the machine disturbs both alike, and
the ratio bridge/PyJWT is taken on the medians.

    .venv/bin/python bench/oidc_validation.py [--n N] [--alg RS256|ES256|PS256|EdDSA ...] [--rounds R]
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import secrets
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make ``bridge`` importable from the checkout
    sys.path.insert(0, str(REPO))

from bridge.errors import AssertionRejected  # noqa: E402
from bridge.idp.oidc.idtoken import IdTokenExpectations, ValidatedIdToken, identify, verify_id_token  # noqa: E402
from bridge.idp.oidc.jwks import SigningKeys, parse_jwks  # noqa: E402

ALGORITHMS = ("RS256", "ES256", "PS256", "EdDSA")
DEFAULT_ALGORITHMS = ("RS256", "ES256")
DEFAULT_N = 1500
DEFAULT_ROUNDS = 3
CLOCK_SKEW = timedelta(seconds=300)
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ISSUER = f"https://login.microsoftonline.com/{TENANT_ID}/v2.0"
CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
EMAIL = "alice.martin@example.com"


class ComparisonVoid(Exception):
    """One of the paths does not verify as it must: timing it would compare nothing."""


# --------------------------------------------------------------------------
# The sample: keys, JWK Set, token.


@dataclass(frozen=True, kw_only=True, slots=True)
class Sample:
    alg: str
    token: str
    tampered: str
    jwks_json: str
    kid: str
    nonce: str
    floor: Callable[[], None]  # the bare signature check with cryptography


def _generate(alg: str, kid: str) -> RSAKey | ECKey | OKPKey:
    params = {"kid": kid, "use": "sig", "alg": alg}
    if alg in ("RS256", "PS256"):
        return RSAKey.generate_key(2048, parameters=params, private=True)
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=params, private=True)
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519", parameters=params, private=True)
    raise ValueError(f"no key for {alg}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims_for(*, nonce: str, now: int) -> dict[str, Any]:
    """An ID token's claims as Entra ID (v2.0) and Keycloak send them, with a user in a few groups."""
    return {
        # the claims OIDC Core requires or the bridge reads
        "iss": ISSUER,
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "aud": CLIENT_ID,
        "azp": CLIENT_ID,
        "exp": now + 3600,
        "iat": now - 30,
        "nbf": now - 30,
        "auth_time": now - 45,
        "nonce": nonce,
        "jti": str(uuid.uuid4()),
        "email": EMAIL,
        "email_verified": True,
        "preferred_username": EMAIL,
        "name": "Alice Martin",
        "amr": ["pwd", "mfa"],
        # what providers add (twenty more)
        "given_name": "Alice",
        "family_name": "Martin",
        "oid": "00000000-0000-0000-66f3-3332eca7ea81",
        "tid": TENANT_ID,
        "ver": "2.0",
        "aio": "AWQAm/8ZAAAA" + _b64url(secrets.token_bytes(24)),
        "uti": _b64url(secrets.token_bytes(16)),
        "sid": str(uuid.uuid4()),
        "acr": "1",
        "at_hash": _b64url(secrets.token_bytes(16)),
        "typ": "ID",
        "ipaddr": "203.0.113.42",
        "ctry": "FR",
        "tenant_region_scope": "EU",
        "xms_tpl": "fr",
        "locale": "fr-FR",
        "zoneinfo": "Europe/Paris",
        "xms_pdl": "EUR",
        "roles": ["Printer.User", "Scanner.User"],
        "groups": [str(uuid.UUID(bytes=secrets.token_bytes(16))) for _ in range(3)],
    }


def make_sample(alg: str) -> Sample:
    """A signing key between two others in a JWK Set, and one ID token it signed, plus a tampered copy."""
    stamp = int(time.time())
    previous, current, following = (_generate(alg, f"{alg.lower()}-{tag}-{secrets.token_hex(4)}")
                                    for tag in ("2026-09", "2026-10", "2026-11"))
    public_keys = [k.as_dict(private=False) for k in (previous, current, following)]
    jwks_json = json.dumps({"keys": public_keys})
    kid = str(current.kid)
    nonce = _b64url(secrets.token_bytes(24))
    header = {"alg": alg, "typ": "JWT", "kid": kid}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc prefers Ed25519 to EdDSA now (RFC 9864)
        token = jose_jwt.encode(header, claims_for(nonce=nonce, now=stamp), current, algorithms=[alg])
    return Sample(alg=alg, token=token, tampered=tamper(token), jwks_json=jwks_json, kid=kid, nonce=nonce,
                  floor=floor_check(alg, token, current))


def tamper(token: str) -> str:
    """The token with one character of its payload changed (in sub: still valid JSON), re-encoded."""
    head, payload, signature = token.split(".")
    claims = _b64url_decode(payload).decode("utf-8")
    at = claims.index('"sub":"') + len('"sub":"')
    changed = claims[:at] + ("B" if claims[at] != "B" else "C") + claims[at + 1:]
    return ".".join((head, _b64url(changed.encode("utf-8")), signature))


def floor_check(alg: str, token: str, key: RSAKey | ECKey | OKPKey) -> Callable[[], None]:
    """A callable doing only the signature check with cryptography (the key object made once)."""
    head, payload, signature = token.split(".")
    message = f"{head}.{payload}".encode("ascii")
    sig = _b64url_decode(signature)
    public = key.public_key
    if alg == "RS256":
        assert isinstance(public, rsa.RSAPublicKey)
        return lambda: public.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
    if alg == "PS256":
        assert isinstance(public, rsa.RSAPublicKey)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=hashes.SHA256.digest_size)
        return lambda: public.verify(sig, message, pss, hashes.SHA256())
    if alg == "ES256":
        assert isinstance(public, ec.EllipticCurvePublicKey)
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        return lambda: public.verify(der, message, ec.ECDSA(hashes.SHA256()))
    assert isinstance(public, ed25519.Ed25519PublicKey)
    return lambda: public.verify(sig, message)


# --------------------------------------------------------------------------
# The two validators.


def bridge_validator(sample: Sample) -> Callable[[str], str]:
    """token -> the user's email through the bridge (the JWK Set parsed once, as the client caches it)."""
    keys: SigningKeys = parse_jwks(sample.jwks_json.encode("utf-8"))
    expected = IdTokenExpectations(issuer=ISSUER, client_id=CLIENT_ID, algorithms=(sample.alg,),
                                   clock_skew=CLOCK_SKEW, email_claim="email", nonce=sample.nonce)

    def validate(token: str) -> str:
        claims = verify_id_token(token, keys, expected, now=datetime.now(UTC))
        validated: ValidatedIdToken = identify(claims)
        return validated.subject

    return validate


def pyjwt_validator(sample: Sample) -> Callable[[str], str]:
    """token -> the user's email through PyJWT, with the checks an OIDC client adds itself (azp, nonce)."""
    key_set = jwt.PyJWKSet.from_json(sample.jwks_json)
    expected_nonce = sample.nonce.encode("utf-8")
    leeway = CLOCK_SKEW.total_seconds()
    options: Any = {"require": ["iss", "aud", "sub", "exp", "iat"]}

    def validate(token: str) -> str:
        kid = jwt.get_unverified_header(token).get("kid")
        pyjwk = key_set[kid]
        claims = jwt.decode(token, pyjwk.key, algorithms=[sample.alg], audience=CLIENT_ID, issuer=ISSUER,
                            leeway=leeway, options=options)
        if claims.get("azp", CLIENT_ID) != CLIENT_ID:
            raise jwt.InvalidTokenError("azp is not ours")
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode("utf-8"), expected_nonce):
            raise jwt.InvalidTokenError("nonce mismatch")
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise jwt.InvalidTokenError("no email")
        return email

    return validate


def outcome(validate: Callable[[str], str], token: str) -> tuple[bool, str]:
    """(accepted, how): how names the subject, or the refusal (the bridge's reason, PyJWT's exception)."""
    try:
        subject = validate(token)
    except AssertionRejected as exc:
        return False, f"refused ({exc.reason})"
    except jwt.InvalidTokenError as exc:
        return False, f"refused ({type(exc).__name__})"
    return True, f"accepted ({subject})"


def prove(sample: Sample, bridge: Callable[[str], str], reference: Callable[[str], str]) -> tuple[str, str]:
    """Both accept the genuine token for EMAIL and refuse the tampered one for its signature, or ComparisonVoid."""
    for name, validate in (("the bridge", bridge), ("PyJWT", reference)):
        ok, how = outcome(validate, sample.token)
        if not ok or how != f"accepted ({EMAIL})":
            raise ComparisonVoid(f"{sample.alg}: {name} did not accept the genuine token: {how}")
    _, bridge_how = outcome(bridge, sample.tampered)
    _, pyjwt_how = outcome(reference, sample.tampered)
    if bridge_how != "refused (signature)":
        raise ComparisonVoid(f"{sample.alg}: the bridge on the tampered token: {bridge_how}, not a signature refusal")
    if pyjwt_how != "refused (InvalidSignatureError)":
        raise ComparisonVoid(f"{sample.alg}: PyJWT on the tampered token: {pyjwt_how}, not a signature refusal")
    try:
        sample.floor()
    except InvalidSignature as exc:
        raise ComparisonVoid(f"{sample.alg}: cryptography refuses the genuine signature") from exc
    return bridge_how, pyjwt_how


# --------------------------------------------------------------------------
# Timing.


def cpu_us(call: Callable[[], object], n: int) -> float:
    """CPU microseconds per call over n calls (process time: this process, all threads)."""
    start = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - start) * 1e6 / n


@dataclass(frozen=True, kw_only=True, slots=True)
class AlgResult:
    alg: str
    token_chars: int
    payload_chars: int
    jwks_chars: int
    bridge_us: tuple[float, ...]
    pyjwt_us: tuple[float, ...]
    floor_us: float
    header_us: float  # PyJWT's get_unverified_header alone (part of the reference's path)
    tamper_bridge: str
    tamper_pyjwt: str

    @property
    def ratio(self) -> float:
        return statistics.median(self.bridge_us) / statistics.median(self.pyjwt_us)


def measure(alg: str, *, n: int, rounds: int) -> AlgResult:
    sample = make_sample(alg)
    bridge, reference = bridge_validator(sample), pyjwt_validator(sample)
    tamper_bridge, tamper_pyjwt = prove(sample, bridge, reference)
    token = sample.token
    warm = min(100, n)
    cpu_us(lambda: bridge(token), warm)
    cpu_us(lambda: reference(token), warm)
    cpu_us(sample.floor, warm)
    bridge_us: list[float] = []
    pyjwt_us: list[float] = []
    for _ in range(rounds):  # alternate, so that load from elsewhere falls on both
        bridge_us.append(cpu_us(lambda: bridge(token), n))
        pyjwt_us.append(cpu_us(lambda: reference(token), n))
    floor_us = cpu_us(sample.floor, n)
    header_us = cpu_us(lambda: jwt.get_unverified_header(token), n)
    return AlgResult(alg=alg, token_chars=len(token), payload_chars=len(token.split(".")[1]),
                     jwks_chars=len(sample.jwks_json), bridge_us=tuple(bridge_us), pyjwt_us=tuple(pyjwt_us),
                     floor_us=floor_us, header_us=header_us, tamper_bridge=tamper_bridge, tamper_pyjwt=tamper_pyjwt)


def report(result: AlgResult, *, n: int) -> tuple[str, ...]:
    b, p = statistics.median(result.bridge_us), statistics.median(result.pyjwt_us)
    rounds = "/".join(f"{x:.0f}" for x in result.bridge_us), "/".join(f"{x:.0f}" for x in result.pyjwt_us)
    return (
        f"{result.alg}: token {result.token_chars} chars (payload {result.payload_chars}), JWK Set of 3 keys "
        f"({result.jwks_chars} chars), the signing key second; N={n} per round, {len(result.bridge_us)} rounds",
        f"  both verify: genuine accepted by both; tampered payload: bridge {result.tamper_bridge}, "
        f"PyJWT {result.tamper_pyjwt}",
        f"  bridge  parse_jwks once; verify_id_token + identify:         {b:7.1f} µs per validation "
        f"(rounds {rounds[0]})",
        f"  PyJWT   PyJWKSet once; header kid, decode, azp + nonce:      {p:7.1f} µs per validation "
        f"(rounds {rounds[1]})",
        f"          of which get_unverified_header (kid):               {result.header_us:7.1f} µs",
        f"  floor   cryptography's verify of the signature alone:        {result.floor_us:7.1f} µs",
        f"  ratio bridge/PyJWT: {result.ratio:.2f}   (bridge - floor: {b - result.floor_us:.1f} µs, "
        f"PyJWT - floor: {p - result.floor_us:.1f} µs)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=DEFAULT_N, help=f"validations per round and path "
                                                                  f"(default {DEFAULT_N})")
    parser.add_argument("--alg", action="append", choices=ALGORITHMS,
                        help="an algorithm to measure; repeat for several (default: RS256 and ES256)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help=f"alternating rounds of bridge and PyJWT; medians compared (default {DEFAULT_ROUNDS})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.n < 1 or args.rounds < 1:
        print("--n and --rounds must be at least 1", file=sys.stderr)
        return 2
    algorithms: list[str] = list(dict.fromkeys(args.alg or DEFAULT_ALGORITHMS))
    print(f"ID token validation, in process: joserfc {version('joserfc')} (the bridge), PyJWT {version('PyJWT')} "
          f"(the reference), cryptography {version('cryptography')}; CPU from time.process_time()")
    started = time.perf_counter()
    try:
        for alg in algorithms:
            for line in report(measure(alg, n=args.n, rounds=args.rounds), n=args.n):
                print(line, flush=True)
    except ComparisonVoid as exc:
        print(f"comparison void: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"({time.perf_counter() - started:.1f} s wall)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
