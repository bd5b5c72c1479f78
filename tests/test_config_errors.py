"""One run of `loginbridge config check` names every mistake of the configuration, not only the first.

bridge.yaml and each tenant file are checked section by section and entry by entry; the loader
raises one ConfigErrors that reads as the first mistake (start-up and the admin API see what they
always saw) and lists them all (`config check` prints each as ``file:line: key: message`` and a count).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.config import load_config, load_tenant_text
from bridge.errors import ConfigError, ConfigErrors
from tests.keys import make_key_and_cert

LOGINBRIDGE = Path(sys.executable).parent / "loginbridge"

MAIN = """\
listen:
  host: 127.0.0.1
  port: 99999
state_dir: ../state
secrets:
  hmac_key: {file: ../state/hmac.key, generate: true}
idp_client:
  timeout_second: 5
console:
  users:
    - name: tech
      password_hash: hunter2
"""

# Two mistakes: a whitelist entry with host bits set, an algorithm that does not exist.
TENANT_A = """\
id: alpha
name: Alpha Corp
domains: [alpha.example, shared.example]
protocol: wstrust
idp_whitelist: [127.0.0.1/32, 10.0.0.1/8]
wstrust:
  adfs_url: https://127.0.0.1:9443
  applies_to: urn:loginbridge:alpha
  signing_certificates: [../certs/signing.pem]
  signature_algorithms: [rsa-sha256, rsa-md5]
"""

# Two mistakes (a misspelt key, a certificate file that is not there) and a domain tenant alpha claims.
TENANT_B = """\
id: beta
nmae: Beta Corp
domains: [beta.example, shared.example]
protocol: saml2
idp_whitelist: [10.2.0.0/16]
saml2:
  entity_id: https://idp.beta.example/idp
  ecp_url: https://idp.beta.example/ecp
  sp_entity_id: urn:loginbridge:sp
  signing_certificates: [../certs/missing.pem]
"""

CLEAN_MAIN = """\
listen: {host: 127.0.0.1, port: 8080}
state_dir: ../state
secrets:
  hmac_key: {file: ../state/hmac.key, generate: true}
"""

CLEAN_TENANT = """\
id: alpha
name: Alpha Corp
domains: [alpha.example]
protocol: wstrust
idp_whitelist: [127.0.0.1/32]
wstrust:
  adfs_url: https://127.0.0.1:9443
  applies_to: urn:loginbridge:alpha
  signing_certificates: [../certs/signing.pem]
"""


def write_conf(root: Path, main: str, tenants: dict[str, str]) -> Path:
    conf = root / "conf"
    (conf / "tenants").mkdir(parents=True)
    (conf / "certs").mkdir()
    (conf / "certs" / "signing.pem").write_bytes(make_key_and_cert("config-errors")[1])
    (conf / "bridge.yaml").write_text(main)
    for name, text in tenants.items():
        (conf / "tenants" / f"{name}.yaml").write_text(text)
    return conf / "bridge.yaml"


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def config_check(config: Path) -> subprocess.CompletedProcess[str]:
    """The real command, as an administrator runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("LOGINBRIDGE_CONFIG", "LOGINBRIDGE_STORE_URL")}
    return subprocess.run([str(LOGINBRIDGE), "config", "check", "--config", str(config)], capture_output=True,
                          text=True, timeout=60, check=False, env=env)


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    return write_conf(tmp_path, MAIN, {"a": TENANT_A, "b": TENANT_B})


def expected_errors(config: Path) -> list[str]:
    main, a, b = str(config), str(config.parent / "tenants" / "a.yaml"), str(config.parent / "tenants" / "b.yaml")
    missing = config.parent / "certs" / "missing.pem"
    return [
        f"{main}:{line_of(MAIN, 'port:')}: listen.port: must be between 0 and 65535, got 99999",
        f"{main}:{line_of(MAIN, 'timeout_second:')}: idp_client.timeout_second: unknown key "
        "(did you mean timeout_seconds?)",
        f"{a}:{line_of(TENANT_A, 'idp_whitelist')}: idp_whitelist[1]: 10.0.0.1/8 has host bits set; "
        "did you mean 10.0.0.0/8?",
        f"{a}:{line_of(TENANT_A, 'signature_algorithms')}: wstrust.signature_algorithms[1]: must be one of "
        "rsa-sha256, rsa-sha512, rsa-sha1, got 'rsa-md5'",
        f"{b}:{line_of(TENANT_B, 'nmae:')}: nmae: unknown key (did you mean name?)",
        f"{b}:{line_of(TENANT_B, 'missing.pem')}: saml2.signing_certificates[0]: certificate file not found: "
        f"{missing}",
        f"{b}:{line_of(TENANT_B, 'domains:')}: domains[1]: domain shared.example is already claimed by tenant "
        f"alpha ({a})",
        f"{main}:{line_of(MAIN, 'password_hash:')}: console.users[0].password_hash: not a password hash: run "
        "`loginbridge console hash-password` and paste its output (never the password itself)",
    ]


def test_config_check_names_every_mistake_in_one_run(broken: Path) -> None:
    result = config_check(broken)
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr
    expected = expected_errors(broken)
    assert result.stderr.splitlines() == [*expected, f"{len(expected)} errors in the configuration"]


def test_a_clean_configuration_still_passes_with_its_summary(tmp_path: Path) -> None:
    result = config_check(write_conf(tmp_path, CLEAN_MAIN, {"alpha": CLEAN_TENANT}))
    assert result.returncode == 0, result.stderr
    assert "alpha: Alpha Corp [wstrust]" in result.stdout and "CN=config-errors" in result.stdout
    assert result.stdout.rstrip().endswith("configuration OK")
    assert "error" not in result.stderr


def test_load_config_still_raises_the_first_mistake(broken: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(broken)
    error = info.value
    first = expected_errors(broken)[0]
    assert str(error) == first
    assert (error.file, error.key, error.line) == (str(broken), "listen.port", line_of(MAIN, "port:"))
    assert isinstance(error, ConfigErrors)
    assert [str(e) for e in error.errors] == expected_errors(broken)


def test_one_bad_tenant_does_not_hide_another(tmp_path: Path) -> None:
    good_main = write_conf(tmp_path, CLEAN_MAIN, {"a": TENANT_A, "b": TENANT_B})
    with pytest.raises(ConfigErrors) as info:
        load_config(good_main)
    files = [Path(e.file).name for e in info.value.errors]
    assert files == ["a.yaml", "a.yaml", "b.yaml", "b.yaml", "b.yaml"]


def test_every_unknown_key_of_a_mapping_is_listed(tmp_path: Path) -> None:
    tenant = CLEAN_TENANT.replace("  applies_to:", "  aplies_to:").replace("  adfs_url:", "  adfs_ulr:")
    tenant += "colour: blue\n"
    config = write_conf(tmp_path, CLEAN_MAIN, {"alpha": tenant})
    with pytest.raises(ConfigErrors) as info:
        load_config(config)
    keys = [e.key for e in info.value.errors]
    # Each misspelling once: what it stands for is not also "missing" (applies_to), nor does it break
    # the section's rule that adfs_url or endpoint be given.
    assert keys == ["colour", "wstrust.adfs_ulr", "wstrust.aplies_to"]
    assert "did you mean applies_to?" in str(info.value.errors[2])


def test_a_domain_claimed_twice_names_both_files(tmp_path: Path) -> None:
    other = CLEAN_TENANT.replace("id: alpha", "id: gamma").replace("[alpha.example]", "[Alpha.Example]")
    config = write_conf(tmp_path, CLEAN_MAIN, {"a": CLEAN_TENANT, "g": other})
    with pytest.raises(ConfigError) as info:
        load_config(config)
    a, g = config.parent / "tenants" / "a.yaml", config.parent / "tenants" / "g.yaml"
    assert info.value.file == str(g) and info.value.key == "domains[0]"
    assert f"already claimed by tenant alpha ({a})" in str(info.value)


def test_load_tenant_text_reads_as_its_first_mistake(tmp_path: Path) -> None:
    (tmp_path / "signing.pem").write_bytes(make_key_and_cert("config-errors")[1])
    text = (CLEAN_TENANT.replace("../certs/signing.pem", "signing.pem")
            .replace("[127.0.0.1/32]", "[127.0.0.1/32, not-a-network]")
            .replace("https://127.0.0.1:9443", "http://127.0.0.1:9443"))
    with pytest.raises(ConfigError) as info:
        load_tenant_text(text, shown="api", base_dir=tmp_path, default_ttl=timedelta(hours=1))
    assert info.value.key == "idp_whitelist[1]" and info.value.file == "api"
    assert isinstance(info.value, ConfigErrors)
    assert [e.key for e in info.value.errors] == ["idp_whitelist[1]", "wstrust.adfs_url"]
