"""The login flows of this package run a real bridge against the IdP simulator: the flows' fixtures."""

from __future__ import annotations

from tests.flows.conftest import make_bridge, no_secrets_in_logs, sim, sim_config, sim_keys_dir

__all__ = ["make_bridge", "no_secrets_in_logs", "sim", "sim_config", "sim_keys_dir"]
