"""A small AD FS simulator speaking the real WS-Trust protocol.

Technicians point devices at it when the customer's IdP is not at hand, and
the end-to-end tests run the bridge against it over loopback https.  It
serves MEX, FederationMetadata.xml and the two ``usernamemixed`` endpoints,
answers with signed SAML tokens or AD FS-worded SOAP faults, and can be told
to misbehave (slow, broken, or forged answers) or to refuse a wrong password in
the dialect of another product (``auth_failure``) through ``/_sim/control``
and ``/_sim/ecp``.  Its own failures are answered as SOAP faults, never as a
bare HTTP 500.
"""
