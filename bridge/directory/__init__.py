"""Directory sync over LDAP: accounts created, updated and disabled from the tenant's directory."""
