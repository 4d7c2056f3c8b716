"""Configuration strictness: unknown variables, guarded librdkafka keys, secrets, the generated reference."""

from __future__ import annotations

import re

import pytest

from stream.config import GUARDED, Settings, load_settings
from stream.config.reference import DOC, render, rows
from stream.errors import ConfigError


def test_an_unknown_fraudstream_variable_fails_naming_it() -> None:
    with pytest.raises(ConfigError, match="FRAUDSTREAM_LOG_FROMAT"):
        load_settings(environ={"FRAUDSTREAM_LOG_FROMAT": "json"})
    # The infrastructure's own variables are allowed, and other prefixes are none of ours.
    s = load_settings(environ={"FRAUDSTREAM_RUN_DIR": "/tmp/x", "FRAUDSTREAM_KAFKA_PORT": "1", "OTHER_THING": "1"})
    assert s == Settings()


@pytest.mark.parametrize("key", sorted(GUARDED))
@pytest.mark.parametrize("section", ["client", "producer", "consumer"])
def test_a_guarded_librdkafka_key_is_refused_at_start_with_its_name(section: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_settings(environ={f"FRAUDSTREAM_KAFKA__{section.upper()}": f"{{'{key}': 'x'}}"})


def test_overrides_reach_their_clients_and_connection_settings_reach_the_admin_client() -> None:
    s = load_settings(
        environ={
            "FRAUDSTREAM_KAFKA__CLIENT": "{ssl.ca.location: /ca.pem}",
            "FRAUDSTREAM_KAFKA__PRODUCER": "{linger.ms: 7}",
            "FRAUDSTREAM_KAFKA__CONSUMER": "{fetch.wait.max.ms: 9}",
        }
    ).kafka
    admin, producer, consumer = s.admin_config(), s.producer_config("t"), s.consumer_config("g")
    assert admin["ssl.ca.location"] == producer["ssl.ca.location"] == consumer["ssl.ca.location"] == "/ca.pem"
    assert producer["linger.ms"] == 7 and "fetch.wait.max.ms" not in producer
    assert consumer["fetch.wait.max.ms"] == 9 and "linger.ms" not in consumer
    assert consumer["isolation.level"] == "read_committed" and producer["acks"] == "all"


def test_a_bad_secret_is_named_but_never_echoed() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"FRAUDSTREAM_KAFKA__SASL_PASSWORD": "{918273645: 1}"})
    assert "kafka.sasl_password" in str(err.value) and "918273645" not in str(err.value)


def test_every_field_has_a_description_and_the_reference_is_current() -> None:
    undocumented = [key for key, _default, description in rows(Settings) if not description]
    assert not undocumented
    assert DOC.read_text() == render(), "docs/configuration.md is stale: python -m stream.config.reference"


SASL = {
    "FRAUDSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
    "FRAUDSTREAM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
    "FRAUDSTREAM_KAFKA__SASL_USERNAME": "fraudstream",
    "FRAUDSTREAM_KAFKA__SASL_PASSWORD": "s3cr3t-918273645",
}


def test_sasl_ssl_reaches_every_client_and_an_incomplete_one_fails_without_echoing_the_password() -> None:
    kafka = load_settings(environ=SASL | {"FRAUDSTREAM_KAFKA__SSL_ENDPOINT_IDENTIFICATION": "false"}).kafka
    for conf in (kafka.admin_config(), kafka.producer_config("t"), kafka.consumer_config("g")):
        assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
        assert conf["sasl.password"] == "s3cr3t-918273645"
        assert conf["ssl.endpoint.identification.algorithm"] == "none"
    assert "s3cr3t" not in repr(kafka)
    incomplete = {k: v for k, v in SASL.items() if not k.endswith("USERNAME")}
    with pytest.raises(ConfigError, match="sasl_username") as err:
        load_settings(environ=incomplete)
    assert "918273645" not in str(err.value)
    with pytest.raises(ConfigError, match=r"kafka\.sasl_mechanism"):
        load_settings(environ=SASL | {"FRAUDSTREAM_KAFKA__SASL_MECHANISM": "GSSAPI"})
    with pytest.raises(ConfigError, match=r"ssl\.key\.password"):
        load_settings(environ={"FRAUDSTREAM_KAFKA__CLIENT": "{ssl.key.password: 918273645}"})


def test_a_redis_url_with_a_password_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError, match=r"redis\.password") as err:
        load_settings(environ={"FRAUDSTREAM_REDIS_URL": "rediss://app:hunter2-918273645@cache:6379/0"})
    assert "918273645" not in str(err.value)
    with pytest.raises(ConfigError, match=r"redis\.url"):
        load_settings(environ={"FRAUDSTREAM_REDIS_URL": "http://cache:6379"})
    s = load_settings(environ={"FRAUDSTREAM_REDIS__USERNAME": "app", "FRAUDSTREAM_REDIS__PASSWORD": "pw-918273645"})
    assert "918273645" not in repr(s)
