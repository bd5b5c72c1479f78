"""Configuration loading: a good configuration, and every kind of mistake named by file, key and line."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from ipaddress import ip_network
from pathlib import Path

import pytest

from bridge.config import (
    BridgeConfig,
    Protocol,
    TokenTypeSetting,
    WsTrustVersionSetting,
    fingerprint,
    load_config,
    summarize,
)
from bridge.errors import ConfigError, RequestError
from tests.keys import load_cert, make_key_and_cert

MAIN = """\
listen: {host: 127.0.0.1, port: 8181}
state_dir: ../state
tenants_dir: tenants
secrets:
  hmac_key: {file: ../state/hmac.key, generate: true}
sessions: {ttl_seconds: 3600}
idp_client: {connect_timeout_seconds: 2, timeout_seconds: 7.5, max_connections_per_idp: 4}
logging: {level: debug}
"""

TENANT = """\
id: example
name: Example Corp
domains: [Example.COM, example.org]
protocol: wstrust
idp_whitelist: [127.0.0.1/32, "::1/128"]
session_ttl_seconds: 600
wstrust:
  adfs_url: https://127.0.0.1:9443/
  version: 1.3
  applies_to: urn:loginbridge:example.com
  token_type: saml11
  issuer: http://127.0.0.1:9443/adfs/services/trust
  signing_certificates: [../certs/adfs-signing.pem]
  signature_algorithms: [rsa-sha256, rsa-sha1]
  clock_skew_seconds: 120
  subject_claim: email
"""

SAML_TENANT = """\
id: other-co
name: Other Co
domains: [other.example]
protocol: saml2
idp_whitelist: [10.1.0.0/16]
saml2:
  entity_id: https://idp.other.example/idp/shibboleth
  ecp_url: https://idp.other.example/idp/profile/SAML2/SOAP/ECP
  sp_entity_id: urn:loginbridge:sp
  signing_certificates: [../certs/other.pem]
"""


def write_conf(root: Path, *, main: str = MAIN, tenants: dict[str, str] | None = None) -> Path:
    """conf/bridge.yaml, conf/tenants/*.yaml and conf/certs/*.pem under ``root``."""
    conf = root / "conf"
    (conf / "tenants").mkdir(parents=True, exist_ok=True)
    (conf / "certs").mkdir(exist_ok=True)
    _, cert_a = make_key_and_cert("adfs-signing-a")
    _, cert_b = make_key_and_cert("adfs-signing-b")
    (conf / "certs" / "adfs-signing.pem").write_bytes(cert_a + cert_b)
    (conf / "certs" / "other.pem").write_bytes(make_key_and_cert("other-idp")[1])
    (conf / "bridge.yaml").write_text(main)
    for name, text in (tenants if tenants is not None else {"example": TENANT}).items():
        (conf / "tenants" / f"{name}.yaml").write_text(text)
    return conf / "bridge.yaml"


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the n-th line containing ``needle``."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return hits[occurrence - 1]


def config_error(path: Path, **kwargs: bool) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, **kwargs)
    return info.value


def test_good_config_is_loaded_and_frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_conf(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths resolve against the naming file, not the cwd

    config = load_config(path)

    assert config.listen_host == "127.0.0.1" and config.listen_port == 8181
    assert config.state_dir == tmp_path / "state" and config.state_dir.is_dir()
    assert config.session_ttl == timedelta(hours=1)
    assert config.idp_client.connect_timeout == 2.0 and config.idp_client.timeout == 7.5
    assert config.idp_client.max_connections_per_idp == 4
    assert config.log_level == "DEBUG"
    (tenant,) = config.tenants
    assert tenant.id == "example" and tenant.protocol is Protocol.WSTRUST
    assert tenant.domains == ("example.com", "example.org")
    assert tenant.idp_whitelist == (ip_network("127.0.0.1/32"), ip_network("::1/128"))
    assert tenant.session_ttl == timedelta(seconds=600)
    assert tenant.source == tmp_path / "conf" / "tenants" / "example.yaml"
    ws = tenant.wstrust
    assert ws is not None and tenant.saml2 is None
    assert ws.adfs_url == "https://127.0.0.1:9443" and ws.endpoint is None
    assert ws.version is WsTrustVersionSetting.V13
    assert ws.token_type is TokenTypeSetting.SAML11
    assert ws.signature_algorithms == ("rsa-sha256", "rsa-sha1")
    assert ws.clock_skew == timedelta(seconds=120) and ws.subject_claim == "email"
    assert ws.federation_metadata is False and ws.ca_file is None
    pinned = [fingerprint(c) for c in ws.signing_certificates]
    expected = [fingerprint(load_cert(make_key_and_cert(cn)[1]))
                for cn in ("adfs-signing-a", "adfs-signing-b")]
    assert pinned == expected  # both certificates of the one PEM file
    assert config.warnings == ()
    with pytest.raises(AttributeError):
        config.listen_port = 1  # type: ignore[misc]


def test_generated_hmac_key_is_private_and_never_shown(tmp_path: Path) -> None:
    config = load_config(write_conf(tmp_path))
    key_file = tmp_path / "state" / "hmac.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    text = key_file.read_text().strip()
    assert len(bytes.fromhex(text)) == 32
    assert config.hmac_key == text.encode()
    assert text not in repr(config) and "hmac_key=" not in repr(config)
    assert text not in summarize(config)
    # A second load reuses the file instead of replacing it.
    assert load_config(tmp_path / "conf" / "bridge.yaml").hmac_key == config.hmac_key


def test_tenant_lookup(tmp_path: Path) -> None:
    config = load_config(write_conf(tmp_path, tenants={"example": TENANT, "other": SAML_TENANT}))
    assert config.tenant_for_domain("EXAMPLE.com") is config.tenant("example")
    assert config.tenant_for_domain("other.example.") is config.tenant("other-co")
    assert config.tenant_for_domain("evil.example") is None
    with pytest.raises(RequestError, match=r"unknown tenant 'nope' \(known tenants: example, other-co\)"):
        config.tenant("nope")


def test_saml2_tenant(tmp_path: Path) -> None:
    config = load_config(write_conf(tmp_path, tenants={"other": SAML_TENANT}))
    (tenant,) = config.tenants
    s = tenant.saml2
    assert tenant.protocol is Protocol.SAML2 and tenant.wstrust is None and s is not None
    assert s.ecp_url == "https://idp.other.example/idp/profile/SAML2/SOAP/ECP"
    assert s.sp_entity_id == "urn:loginbridge:sp" and s.subject_claim == "nameid"
    assert s.signature_algorithms == ("rsa-sha256", "rsa-sha512")
    assert len(s.signing_certificates) == 1
    assert tenant.session_ttl == timedelta(hours=1)  # inherited from the main file


@pytest.mark.parametrize(("raw", "expected"), [("1.3", WsTrustVersionSetting.V13),
                                               ("'1.3'", WsTrustVersionSetting.V13),
                                               ("2005", WsTrustVersionSetting.V2005),
                                               ("auto", WsTrustVersionSetting.AUTO)])
def test_wstrust_version_spellings(tmp_path: Path, raw: str, expected: WsTrustVersionSetting) -> None:
    tenant = TENANT.replace("version: 1.3", f"version: {raw}")
    config = load_config(write_conf(tmp_path, tenants={"example": tenant}))
    assert config.tenants[0].wstrust is not None
    assert config.tenants[0].wstrust.version is expected


def test_summary_names_tenants_endpoints_and_certificates(tmp_path: Path) -> None:
    config = load_config(write_conf(tmp_path, tenants={"example": TENANT, "other": SAML_TENANT}))
    text = summarize(config)
    ws = config.tenants[0].wstrust
    assert ws is not None
    for needle in ("example: Example Corp [wstrust]", "example.com, example.org", "127.0.0.1/32",
                   "https://127.0.0.1:9443", "CN=adfs-signing-a", fingerprint(ws.signing_certificates[0]),
                   "other-co: Other Co [saml2]", "10.1.0.0/16", "idp/profile/SAML2/SOAP/ECP"):
        assert needle in text, needle


# -- errors: file, key path and line -----------------------------------------


def test_misspelt_tenant_key_names_file_key_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = TENANT.replace("  applies_to:", "  applies_too:")
    write_conf(tmp_path, tenants={"example": tenant})
    monkeypatch.chdir(tmp_path)
    err = config_error(Path("conf/bridge.yaml"))
    line = line_of(tenant, "applies_too")
    assert str(err) == (f"conf/tenants/example.yaml:{line}: wstrust.applies_too: "
                        "unknown key (did you mean applies_to?)")
    assert (err.file, err.key, err.line) == ("conf/tenants/example.yaml", "wstrust.applies_too", line)


def test_unknown_main_key_suggests(tmp_path: Path) -> None:
    main = MAIN.replace("state_dir:", "state_directory:")
    path = write_conf(tmp_path, main=main)
    err = config_error(path)
    assert err.key == "state_directory" and err.line == line_of(main, "state_directory")
    assert "did you mean state_dir?" in str(err) and err.file == str(path)


def test_missing_required_key(tmp_path: Path) -> None:
    tenant = TENANT.replace("  applies_to: urn:loginbridge:example.com\n", "")
    path = write_conf(tmp_path, tenants={"example": tenant})
    err = config_error(path)
    assert err.key == "wstrust.applies_to" and "missing required key" in str(err)
    assert err.line == line_of(tenant, "adfs_url")  # where the wstrust mapping starts
    assert err.file.endswith("tenants/example.yaml")


def test_wrong_type(tmp_path: Path) -> None:
    main = MAIN.replace("port: 8181", "port: eighty")
    err = config_error(write_conf(tmp_path, main=main))
    assert err.key == "listen.port" and err.line == 1 and "expected a whole number" in str(err)


def test_duplicate_domain_across_tenants(tmp_path: Path) -> None:
    second = SAML_TENANT.replace("domains: [other.example]", "domains:\n  - other.example\n  - EXAMPLE.org")
    path = write_conf(tmp_path, tenants={"a-example": TENANT, "b-other": second})
    err = config_error(path)
    assert err.file.endswith("tenants/b-other.yaml")
    assert err.key == "domains[1]" and err.line == line_of(second, "EXAMPLE.org")
    assert "example.org is already claimed by tenant example" in str(err)


def test_duplicate_tenant_id(tmp_path: Path) -> None:
    second = SAML_TENANT.replace("id: other-co", "id: example")
    err = config_error(write_conf(tmp_path, tenants={"a": TENANT, "b": second}))
    assert err.file.endswith("tenants/b.yaml") and err.key == "id" and err.line == 1
    assert "already used by" in str(err) and "tenants/a.yaml" in str(err)


def test_inline_secret_refused(tmp_path: Path) -> None:
    main = MAIN.replace("hmac_key: {file: ../state/hmac.key, generate: true}",
                        "hmac_key: 0123456789abcdef0123456789abcdef0123")
    err = config_error(write_conf(tmp_path, main=main))
    assert err.key == "secrets.hmac_key" and err.line == line_of(main, "hmac_key")
    assert "secrets are never inline: use env or file" in str(err)
    assert "0123456789abcdef" not in str(err)


def test_secret_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    main = MAIN.replace("hmac_key: {file: ../state/hmac.key, generate: true}",
                        "hmac_key: {env: TEST_LB_HMAC}")
    path = write_conf(tmp_path, main=main)
    monkeypatch.delenv("TEST_LB_HMAC", raising=False)
    err = config_error(path)
    assert err.key == "secrets.hmac_key.env" and "TEST_LB_HMAC is not set" in str(err)
    monkeypatch.setenv("TEST_LB_HMAC", "k" * 40)
    assert load_config(path).hmac_key == b"k" * 40
    monkeypatch.setenv("TEST_LB_HMAC", "short")
    assert "too short" in str(config_error(path))


def test_idp_urls_must_be_https(tmp_path: Path) -> None:
    tenant = TENANT.replace("adfs_url: https://127.0.0.1:9443/", "adfs_url: http://127.0.0.1:9443/")
    err = config_error(write_conf(tmp_path, tenants={"example": tenant}))
    assert err.key == "wstrust.adfs_url" and err.line == line_of(tenant, "adfs_url")
    assert "must be an https:// URL" in str(err)


def test_bad_cidr_and_host_bits(tmp_path: Path) -> None:
    bad = TENANT.replace("[127.0.0.1/32, \"::1/128\"]", "[127.0.0.1/32, 10.0.0.300/8]")
    err = config_error(write_conf(tmp_path, tenants={"example": bad}))
    assert err.key == "idp_whitelist[1]" and err.line == line_of(bad, "idp_whitelist")
    assert "not an IP network" in str(err)
    loose = TENANT.replace("[127.0.0.1/32, \"::1/128\"]", "[10.1.2.3/24]")
    err = config_error(write_conf(tmp_path, tenants={"example": loose}))
    assert err.key == "idp_whitelist[0]" and "did you mean 10.1.2.0/24?" in str(err)


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    tenant = TENANT.replace("name: Example Corp", "name: [Example Corp")
    err = config_error(write_conf(tmp_path, tenants={"example": tenant}))
    assert err.file.endswith("tenants/example.yaml") and err.line is not None
    assert "YAML syntax error" in str(err) and err.line >= line_of(tenant, "name:")


def test_duplicate_key_in_a_mapping(tmp_path: Path) -> None:
    tenant = TENANT + "name: Again\n"
    err = config_error(write_conf(tmp_path, tenants={"example": tenant}))
    assert err.key == "name" and err.line == line_of(tenant, "name:", 2) and "duplicate key" in str(err)


def test_missing_files(tmp_path: Path) -> None:
    err = config_error(tmp_path / "nowhere.yaml")
    assert err.file.endswith("nowhere.yaml") and "file not found" in str(err)
    main = MAIN.replace("tenants_dir: tenants", "tenants_dir: no-such-dir")
    err = config_error(write_conf(tmp_path, main=main))
    assert err.key == "tenants_dir" and err.line == line_of(main, "tenants_dir")


def test_missing_certificate_is_an_error_only_when_files_are_required(tmp_path: Path) -> None:
    tenant = TENANT.replace("../certs/adfs-signing.pem", "../certs/absent.pem") + "  ca_file: ../ca.pem\n"
    path = write_conf(tmp_path, tenants={"example": tenant})
    err = config_error(path)
    assert err.key == "wstrust.signing_certificates[0]" and "absent.pem" in str(err)
    assert err.line == line_of(tenant, "absent.pem")
    config = load_config(path, require_files=False)
    assert config.tenants[0].wstrust is not None
    assert config.tenants[0].wstrust.signing_certificates == ()
    assert any("absent.pem does not exist yet" in w for w in config.warnings)
    assert any("ca.pem does not exist yet" in w for w in config.warnings)


def test_bad_pem_names_the_file(tmp_path: Path) -> None:
    path = write_conf(tmp_path)
    (tmp_path / "conf" / "certs" / "adfs-signing.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    err = config_error(path)
    assert "adfs-signing.pem: no readable PEM certificate" in str(err)
    assert err.key == "wstrust.signing_certificates[0]"


def test_soon_expiring_certificate_is_a_warning(tmp_path: Path) -> None:
    path = write_conf(tmp_path)
    short_lived = make_key_and_cert("short-lived", days=10)[1]
    (tmp_path / "conf" / "certs" / "adfs-signing.pem").write_bytes(short_lived)
    config = load_config(path)
    (warning,) = config.warnings
    assert "CN=short-lived expires on" in warning and "tenants/example.yaml" in warning


def test_section_must_match_protocol(tmp_path: Path) -> None:
    tenant = TENANT.replace("protocol: wstrust", "protocol: saml2")
    err = config_error(write_conf(tmp_path, tenants={"example": tenant}))
    assert err.key == "wstrust" and "only allowed with protocol: wstrust" in str(err)


def test_certificates_must_be_pinned(tmp_path: Path) -> None:
    tenant = TENANT.replace("  signing_certificates: [../certs/adfs-signing.pem]\n", "")
    err = config_error(write_conf(tmp_path, tenants={"example": tenant}))
    assert err.key == "wstrust" and "federation_metadata" in str(err)
    ok = tenant + "  federation_metadata: true\n"
    assert isinstance(load_config(write_conf(tmp_path, tenants={"example": ok})), BridgeConfig)


@pytest.mark.parametrize(("old", "new", "key", "needle"), [
    ("clock_skew_seconds: 120", "clock_skew_seconds: 3600", "wstrust.clock_skew_seconds",
     "between 0 and 900"),
    ("[rsa-sha256, rsa-sha1]", "[rsa-md5]", "wstrust.signature_algorithms[0]", "must be one of"),
    ("id: example", "id: Example_Corp", "id", "lower-case"),
    ("token_type: saml11", "token_type: jwt", "wstrust.token_type", "must be one of saml2, saml11"),
    ("version: 1.3", "version: 1.2", "wstrust.version", '"1.3", "2005" or auto'),
    ("[Example.COM, example.org]", "[not a domain]", "domains[0]", "not a valid DNS domain"),
])
def test_bad_values(tmp_path: Path, old: str, new: str, key: str, needle: str) -> None:
    tenant = TENANT.replace(old, new)
    assert tenant != TENANT
    err = config_error(write_conf(tmp_path, tenants={"example": tenant}))
    assert err.key == key and needle in str(err)
    assert err.line == line_of(tenant, new.split(":")[0].strip() if ":" in new else new)


def test_world_readable_secret_file_warns(tmp_path: Path) -> None:
    path = write_conf(tmp_path)
    load_config(path)
    os.chmod(tmp_path / "state" / "hmac.key", 0o644)
    assert any("readable by other users" in w for w in load_config(path).warnings)


def test_store_url_defaults_to_sqlite_in_the_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOGINBRIDGE_STORE_URL", raising=False)
    config = load_config(write_conf(tmp_path))
    assert config.store_url == f"sqlite://{config.state_dir / 'loginbridge.db'}"
    assert "store: sqlite:///" in summarize(config)


def test_store_url_from_the_file_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOGINBRIDGE_STORE_URL", raising=False)
    main = MAIN + "store:\n  url: postgresql://bridge@db.internal:5432/loginbridge?sslmode=verify-full\n"
    path = write_conf(tmp_path, main=main)
    assert load_config(path).store_url == "postgresql://bridge@db.internal:5432/loginbridge?sslmode=verify-full"
    monkeypatch.setenv("LOGINBRIDGE_STORE_URL", "postgresql://bridge:s3cret@10.0.0.5/loginbridge")
    config = load_config(path)
    assert config.store_url == "postgresql://bridge:s3cret@10.0.0.5/loginbridge"  # the environment wins
    assert "s3cret" not in summarize(config) and "store: postgresql://bridge:***@10.0.0.5/loginbridge" in summarize(config)
    assert "s3cret" not in repr(config)
    monkeypatch.setenv("LOGINBRIDGE_STORE_URL", "mysql://x")
    assert "LOGINBRIDGE_STORE_URL must be" in str(config_error(path))


@pytest.mark.parametrize(("url", "says"), [
    ("postgresql://bridge:inline@db/loginbridge", "holds a password"),
    ("postgresql://bridge@db/loginbridge?password=inline", "holds a password"),
    ("mysql://bridge@db/loginbridge", "must be a sqlite:///ABSOLUTE/PATH or postgresql://"),
    ("sqlite://relative.db", "names an absolute path"),
])
def test_bad_store_urls_name_file_key_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str,
                                                says: str) -> None:
    monkeypatch.delenv("LOGINBRIDGE_STORE_URL", raising=False)
    main = MAIN + f"store:\n  url: {url}\n"
    error = config_error(write_conf(tmp_path, main=main))
    assert f"bridge.yaml:{line_of(main, 'url:')}: store.url: " in str(error) and says in str(error), str(error)


def test_trusted_proxies(tmp_path: Path) -> None:
    config = load_config(write_conf(tmp_path))
    assert config.trusted_proxies == ()  # the default: the client is the TCP peer
    assert "trusted proxies: none" in summarize(config)
    main = MAIN.replace("listen: {host: 127.0.0.1, port: 8181}",
                        'listen:\n  port: 8181\n  trusted_proxies: [10.0.0.0/24, "2001:db8::5/128"]')
    config = load_config(write_conf(tmp_path, main=main))
    assert config.trusted_proxies == (ip_network("10.0.0.0/24"), ip_network("2001:db8::5/128"))
    assert "trusted proxies: 10.0.0.0/24, 2001:db8::5/128" in summarize(config)


@pytest.mark.parametrize(("value", "key", "needle"), [
    ("[10.0.0.0/24, 10.0.0.300/32]", "listen.trusted_proxies[1]", "not an IP network in CIDR form"),
    ("[10.0.0.5/24]", "listen.trusted_proxies[0]", "did you mean 10.0.0.0/24?"),
    ("10.0.0.0/24", "listen.trusted_proxies", "expected a list"),
])
def test_bad_trusted_proxies_name_file_key_and_line(tmp_path: Path, value: str, key: str, needle: str) -> None:
    main = MAIN.replace("listen: {host: 127.0.0.1, port: 8181}", f"listen:\n  port: 8181\n  trusted_proxies: {value}")
    err = config_error(write_conf(tmp_path, main=main))
    assert err.key == key and needle in str(err), str(err)
    assert f"bridge.yaml:{line_of(main, 'trusted_proxies')}: {key}: " in str(err)
