"""SAML 2.0 over ECP: the AuthnRequest and Response, IdP and SP metadata, the SP key pair, the client.

Pure build/parse in ``ecp`` and ``metadata``; the I/O in ``client``.  Never imports ``bridge.idp.wstrust``.
"""
