from __future__ import annotations

import pytest
from pydantic import ValidationError

from liftwatch.settings import Settings, parse_mqtt_url


def test_defaults_point_at_the_local_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("LIFTWATCH_DATABASE_URL", "LIFTWATCH_MQTT_URL", "LIFTWATCH_ENV"):
        monkeypatch.delenv(k, raising=False)
    s = Settings()
    assert s.database_url.startswith("postgresql://") and "127.0.0.1" in s.database_url
    assert (s.mqtt.host, s.mqtt.port, s.mqtt.username) == ("127.0.0.1", 1883, None)


def test_mqtt_url_with_credentials() -> None:
    ep = parse_mqtt_url("mqtt://ingest:s%40cret@broker.example:1884")
    assert (ep.host, ep.port, ep.username, ep.password, ep.tls) == ("broker.example", 1884, "ingest", "s@cret", False)
    assert parse_mqtt_url("mqtts://h").port == 8883


@pytest.mark.parametrize("url", ["http://h:1883", "mqtt://", "mqtt://h:notaport"])
def test_bad_mqtt_url_is_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(mqtt_url=url)


def test_bad_database_url_is_refused() -> None:
    with pytest.raises(ValidationError, match="postgresql://"):
        Settings(database_url="mysql://root@localhost/x")


def test_default_credentials_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="refusing default credentials"):
        Settings(env="production", database_url="postgresql://postgres:postgres@db/liftwatch",
                 mqtt_url="mqtt://ingest:Xk3-long-random@broker:1883")
    with pytest.raises(ValidationError, match="MQTT"):
        Settings(env="production", database_url="postgresql://lw:Xk3-long-random@db/liftwatch",
                 mqtt_url="mqtt://broker:1883")
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(env="production", database_url="postgresql://lw:Xk3-long-random@db/liftwatch",
                 mqtt_url="mqtt://ingest:Xk3-long-random@broker:1883")
    ok = Settings(env="production", database_url="postgresql://lw:Xk3-long-random@db/liftwatch",
                  mqtt_url="mqtt://ingest:Xk3-long-random@broker:1883", jwt_secret="k" * 40)
    assert ok.env == "production"
