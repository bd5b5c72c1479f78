"""SCIM 2.0 provisioning (RFC 7643/7644) per tenant at /scim/v2/{tenant}/ (bearer SCIM tokens)."""
