"""TLS files in the settings: checked at load (the key named), handed to every client."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.config import load_settings
from stream.errors import ConfigError
from stream.state.connection import redis_options

pytestmark = pytest.mark.integration


def test_tls_files_are_checked_at_load_and_reach_the_clients(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "client.pem", "client.key"))
    for f in (ca, cert, key):
        f.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"kafka\.ssl_ca_location"):
        load_settings(environ={"FRAUDSTREAM_KAFKA__SSL_CA_LOCATION": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError, match="ssl_key_location"):
        load_settings(environ={"FRAUDSTREAM_KAFKA__SSL_CERTIFICATE_LOCATION": str(cert)})
    env = {
        "FRAUDSTREAM_KAFKA__SECURITY_PROTOCOL": "SSL",
        "FRAUDSTREAM_KAFKA__SSL_CA_LOCATION": str(ca),
        "FRAUDSTREAM_KAFKA__SSL_CERTIFICATE_LOCATION": str(cert),
        "FRAUDSTREAM_KAFKA__SSL_KEY_LOCATION": str(key),
        "FRAUDSTREAM_KAFKA__SSL_KEY_PASSWORD": "key-pw-918273645",
        "FRAUDSTREAM_REDIS_URL": "rediss://cache:6380/0",
        "FRAUDSTREAM_REDIS__TLS_CA": str(ca),
    }
    s = load_settings(environ=env)
    for conf in (s.kafka.admin_config(), s.kafka.producer_config(None), s.kafka.consumer_config("g")):
        assert conf["ssl.ca.location"] == str(ca) and conf["ssl.key.location"] == str(key)
        assert conf["ssl.key.password"] == "key-pw-918273645"
    assert redis_options(s.redis)["ssl_ca_certs"] == str(ca)
    with pytest.raises(ConfigError, match="rediss://"):
        load_settings(environ={**env, "FRAUDSTREAM_REDIS_URL": "redis://cache:6379/0"})
