"""The SAML 2.0 ECP exchange with one tenant's IdP (the I/O around bridge.idp.saml.ecp).

The bridge is both the SP and the ECP client: it builds the AuthnRequest,
posts it with HTTP Basic email:password to the IdP's ECP endpoint over the
tenant's whitelisted, address-pinned TLS connection, checks what pysaml2 does
not (InResponseTo, Destination, status) and hands the signed assertion to the
same validator as WS-Trust tokens.  A Response that carries its own
signature must have it verify too, also around an encrypted assertion.  IdP
metadata (file or URL) is re-read on a schedule, so a new signing certificate
is picked up without a restart; the read is one shared fetch that concurrent
logins wait on together (:mod:`bridge.idp.lookup`).

It is also the tenant's :class:`~bridge.idp.browser.BrowserSignin`: SAML 2.0
Web Browser SSO (:mod:`bridge.idp.saml.websso`) for sign-in on the user's
phone, where the IdP's MFA applies.  Both paths build their expectations and
validate the answer through the same code (:meth:`SamlIdp._accept`), so the
browser path accepts nothing the password path would refuse.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from lxml import etree

from bridge.config import Saml2Config, TenantConfig
from bridge.errors import (
    AssertionRejected,
    BridgeError,
    IdpProtocolError,
    IdpRejectedRequest,
    PasswordLoginUnsupported,
)
from bridge.idp.allowlist import require_whitelisted_url
from bridge.idp.assertion import (
    AssertionExpectations,
    ReplayCache,
    ValidatedAssertion,
    remember_once,
    signature_policy,
    validate_assertion,
    verify_response_signature,
)
from bridge.idp.browser import BrowserRedirect
from bridge.idp.http import IdpHttp
from bridge.idp.lookup import SharedLookup
from bridge.idp.saml.ecp import SOAP_CONTENT_TYPE, build_authn_request, read_ecp_answer
from bridge.idp.saml.metadata import IdpMetadata, parse_idp_metadata
from bridge.idp.saml.spkeys import SpKeys
from bridge.idp.saml.websso import NAMEID_EMAIL, build_browser_authn_request, read_post_response, redirect_url

log = logging.getLogger(__name__)

_BROWSER_NOT_SET_UP = "Phone sign-in is not set up for your company. Contact your administrator."


@dataclass(frozen=True, kw_only=True, slots=True)
class ResolvedSaml:
    ecp_url: str | None
    entity_id: str
    certificates: tuple[x509.Certificate, ...]
    sso_url: str | None = None  # HTTP-Redirect SingleSignOnService: saml2.sso_url, else the metadata's


def acs_url_for(tenant: TenantConfig, public_url: str) -> str:
    assert tenant.saml2 is not None
    return tenant.saml2.acs_url or f"{public_url}/saml/{tenant.id}/acs"


def _merge(pinned: tuple[x509.Certificate, ...], extra: tuple[x509.Certificate, ...]) -> tuple[x509.Certificate, ...]:
    seen = {c.fingerprint(hashes.SHA256()) for c in pinned}
    return pinned + tuple(c for c in extra if c.fingerprint(hashes.SHA256()) not in seen)


def _fingerprints(resolved: ResolvedSaml) -> set[bytes]:
    return {c.fingerprint(hashes.SHA256()) for c in resolved.certificates}


class SamlIdp:
    """One tenant's SAML IdP: metadata (refreshed), and the ECP password check."""

    def __init__(self, tenant: TenantConfig, http: IdpHttp, sp: SpKeys, public_url: str) -> None:
        if tenant.saml2 is None:
            raise ValueError(f"tenant {tenant.id} has no saml2 settings")
        self.tenant = tenant
        self.cfg: Saml2Config = tenant.saml2
        self.http = http
        self.sp = sp
        self.acs_url = acs_url_for(tenant, public_url)
        self._lookup: SharedLookup[ResolvedSaml] = SharedLookup(
            self._load, max_age=self.cfg.metadata_refresh.total_seconds(), what=f"IdP metadata of {tenant.id}"
        )

    def close(self) -> None:
        self._lookup.close()

    async def _read_metadata(self) -> IdpMetadata | None:
        cfg = self.cfg
        if cfg.metadata_file is not None:
            raw = await asyncio.to_thread(cfg.metadata_file.read_bytes)
        elif cfg.metadata_url is not None:
            resp = await self.http.request("GET", cfg.metadata_url)
            if resp.status != 200:
                status = f"IdP metadata answered HTTP {resp.status}"
                raise IdpProtocolError(status, cause=status)
            raw = resp.body
        else:
            return None
        return parse_idp_metadata(raw, entity_id=cfg.entity_id)

    def _build(self, meta: IdpMetadata | None) -> ResolvedSaml:
        cfg = self.cfg
        if meta is not None and meta.valid_until is not None and meta.valid_until <= datetime.now(UTC):
            # saml-metadata 2.2.1: metadata past validUntil must not be relied on.
            raise IdpProtocolError(f"the IdP metadata expired at {meta.valid_until.isoformat()} (validUntil)")
        if meta is not None and cfg.ecp_url is None and meta.ecp_url is not None and not meta.ecp_url.startswith(
            "https://"
        ):
            raise IdpProtocolError(f"the IdP metadata names a non-https ECP endpoint {meta.ecp_url}")
        entity_id = cfg.entity_id or (meta.entity_id if meta is not None else "")
        ecp_url = cfg.ecp_url or (meta.ecp_url if meta is not None else None)
        # A non-https Redirect endpoint in metadata is refused when a browser sign-in would use it
        # (begin_browser_signin), not here: password sign-in must not fail because of it.
        sso_url = cfg.sso_url or (meta.sso_redirect_url if meta is not None else None)
        certs = _merge(cfg.signing_certificates, meta.signing_certificates if meta is not None else ())
        return ResolvedSaml(ecp_url=ecp_url, entity_id=entity_id, certificates=certs, sso_url=sso_url)

    async def resolve(self) -> ResolvedSaml:
        """Current IdP facts; metadata is re-read when older than the refresh interval."""
        return await self._lookup.get()

    async def _load(self, previous: ResolvedSaml | None) -> ResolvedSaml:
        """Read and check the metadata; a failed re-read keeps ``previous``, unusable metadata does not."""
        try:
            meta = await self._read_metadata()
        except OSError as exc:
            if previous is None:
                raise IdpProtocolError(f"cannot read IdP metadata ({exc.strerror})") from exc
            log.warning("IdP metadata refresh failed, keeping the previous one: %s", exc.strerror)
            return previous
        except BridgeError as exc:
            if previous is None:
                raise
            log.warning("IdP metadata refresh failed, keeping the previous one: %s", exc)
            return previous
        resolved = self._build(meta)
        if previous is not None and _fingerprints(resolved) != _fingerprints(previous):
            log.info("IdP signing certificates changed at metadata refresh (%d now)", len(resolved.certificates))
        return resolved

    async def authenticate(self, *, username: str, password: str, replay: ReplayCache) -> ValidatedAssertion:
        """Send the credentials over ECP and return the validated assertion (its id now in ``replay``), or raise."""
        resolved = await self.resolve()
        if resolved.ecp_url is None:
            raise PasswordLoginUnsupported(
                f"the IdP of tenant {self.tenant.id} ({resolved.entity_id}) offers no SAML ECP (SOAP) endpoint, "
                "so passwords typed at a device cannot be checked; use shared-account or device-login mode"
            )
        request = build_authn_request(
            sp_entity_id=self.cfg.sp_entity_id,
            acs_url=self.acs_url,
            idp_ecp_url=resolved.ecp_url,
            now=datetime.now(UTC),
            signing_key=(self.sp.key_pem, self.sp.cert_pem) if self.cfg.sign_requests else None,
        )
        basic = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        resp = await self.http.request(
            "POST",
            resolved.ecp_url,
            body=request.envelope,
            headers={"Content-Type": SOAP_CONTENT_TYPE, "Authorization": f"Basic {basic}", "SOAPAction": ""},
        )
        # Every status is read (a refusal may be a SAML status, a SOAP fault, 401/403 or an error page).
        answer = read_ecp_answer(
            status=resp.status, body=resp.body, content_type=resp.content_type,
            request_id=request.request_id, acs_url=self.acs_url, sp_key_pem=self.sp.key_pem,
        )
        return await self._accept(resolved, request_id=request.request_id, assertion_xml=answer.response_xml,
                                  encrypted=answer.encrypted, received=resp.body, replay=replay)

    def expectations(self, resolved: ResolvedSaml, request_id: str) -> AssertionExpectations:
        """What a token answering ``request_id`` must be: the same for the ECP and the browser answer.

        Recipient is required and must be our ACS (saml-profiles 4.1.4.2), InResponseTo our request.
        """
        return AssertionExpectations(
            issuer=resolved.entity_id or None,
            audience=self.cfg.sp_entity_id,
            certificates=resolved.certificates,
            policy=signature_policy(self.cfg.signature_algorithms),
            clock_skew=self.cfg.clock_skew,
            subject_claim=self.cfg.subject_claim,
            recipient=self.acs_url,
            recipient_required=True,
            in_response_to=request_id,
        )

    async def _accept(self, resolved: ResolvedSaml, *, request_id: str, assertion_xml: bytes, encrypted: bool,
                      received: bytes, replay: ReplayCache, document: etree._Element | None = None,
                      ) -> ValidatedAssertion:
        """Validate the answer's assertion and remember it once: the last step of both paths.

        ``received`` is the answer as it arrived (an ECP envelope, a decoded SAMLResponse).
        When the assertion was encrypted, validate_assertion sees only the decrypted
        plaintext, so a signature the Response carries (over the ciphertext) is checked
        here, on ``received``.  ``document`` may be the tree already parsed from
        ``assertion_xml`` (never a modified one).
        """
        expectations = self.expectations(resolved, request_id)
        now = datetime.now(UTC)
        if encrypted:
            verify_response_signature(received, expectations, now=now)
        validated = validate_assertion(assertion_xml, expectations, now=now, document=document)
        return await remember_once(replay, validated, expectations, now=now)

    # --- browser sign-in (BrowserSignin) -------------------------------------------------------

    async def begin_browser_signin(self, *, state: str, login_hint: str | None = None) -> BrowserRedirect:
        """The IdP's HTTP-Redirect SSO URL carrying a fresh AuthnRequest, ``state`` as RelayState.

        The SSO URL is ``saml2.sso_url``, else the metadata's HTTP-Redirect
        SingleSignOnService; it must be https and its host must resolve inside
        the tenant's ``idp_whitelist`` (checked here by a DNS lookup, without a
        request: the phone's browser, not the bridge, connects to it).
        ``login_hint`` is not sent: a SAML Subject is a demand, not a hint, and
        Entra ID refuses requests carrying one (:mod:`bridge.idp.saml.websso`).
        The NameID is asked for in email format only when the tenant reads the
        subject from it (``subject_claim: nameid``); an IdP configured for
        another format refuses a policy it cannot meet.
        """
        del login_hint  # see the docstring: the signed subject is compared with the email afterwards
        resolved = await self.resolve()
        if resolved.sso_url is None:
            why = (f"the IdP metadata of tenant {self.tenant.id} ({resolved.entity_id}) lists no HTTP-Redirect "
                   "SingleSignOnService, so phone sign-in cannot start; set saml2.sso_url")
            raise IdpRejectedRequest(why, cause=why, message=_BROWSER_NOT_SET_UP)
        await require_whitelisted_url(resolved.sso_url, self.tenant.idp_whitelist,
                                      refusing="send a browser to the IdP sign-in URL")
        request = build_browser_authn_request(
            sp_entity_id=self.cfg.sp_entity_id,
            acs_url=self.acs_url,
            sso_url=resolved.sso_url,
            now=datetime.now(UTC),
            name_id_format=NAMEID_EMAIL if self.cfg.subject_claim == "nameid" else None,
        )
        url = redirect_url(
            sso_url=resolved.sso_url,
            request_xml=request.xml,
            relay_state=state,
            signing_key_pem=self.sp.key_pem if self.cfg.sign_requests else None,
        )
        return BrowserRedirect(url=url, request_id=request.request_id)

    async def finish_browser_signin(self, *, form: Mapping[str, str], request_id: str | None,
                                    replay: ReplayCache) -> ValidatedAssertion:
        """Check the POSTed SAMLResponse against the request ``request_id`` and remember its assertion.

        An answer with no request to match (IdP-initiated, or a lost request id) is refused:
        InResponseTo is what ties the answer to this sign-in.
        """
        if not request_id:
            raise AssertionRejected("in_response_to", "no AuthnRequest is pending for this answer")
        resolved = await self.resolve()
        posted = read_post_response(form, request_id=request_id, acs_url=self.acs_url, sp_key_pem=self.sp.key_pem)
        taken = posted.assertion
        return await self._accept(
            resolved, request_id=request_id, assertion_xml=taken.xml, encrypted=taken.encrypted,
            received=posted.response_xml, replay=replay, document=None if taken.encrypted else posted.document,
        )
