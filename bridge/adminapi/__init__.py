"""The admin API /admin/v1: tenants, users, devices and attempts for administrators (bearer admin tokens)."""
