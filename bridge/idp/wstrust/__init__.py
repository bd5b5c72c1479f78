"""WS-Trust against AD FS: RST/RSTR messages, MEX and FederationMetadata readers, the client.

Pure build/parse in ``messages``, ``mex``, ``fedmeta``; the I/O in ``client``.  Never imports ``bridge.idp.saml``.
"""
