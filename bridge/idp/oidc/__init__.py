"""OpenID Connect: discovery, JWKS, ID token checks, error dialects and client authentication (pure), the client."""
