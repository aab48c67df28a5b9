"""docker-compose.yml is valid, carries no default secret, and is wired the way production needs.

Uses the `docker-compose` command (`config` only: no container engine needed); see compose_support.py.
"""

from __future__ import annotations

import re
import sys

import pytest
from compose_support import (
    COMPOSE_FILE,
    DUMMY,
    REQUIRED_VARS,
    ROOT,
    command,
    ingest_services,
    is_one_shot,
    liftwatch_services,
    option,
    render,
    run_compose,
)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    """The fully interpolated compose model (dummy secrets), as a dict."""
    return render(tmp_path_factory.mktemp("compose"), DUMMY)


# --- validity and secrets ------------------------------------------------------------------


def test_compose_file_is_valid_with_required_vars(tmp_path):
    res = run_compose(["config", "-q"], tmp_path, DUMMY)
    assert res.returncode == 0, f"docker-compose config -q failed:\n{res.stdout}\n{res.stderr}"


@pytest.mark.parametrize("missing", REQUIRED_VARS)
def test_compose_refuses_to_render_without_secret(tmp_path, missing):
    env = {k: v for k, v in DUMMY.items() if k != missing}
    res = run_compose(["config", "-q"], tmp_path, env)
    assert res.returncode != 0, (
        f"docker-compose config succeeded without {missing}: a default secret?"
    )
    assert missing in res.stdout + res.stderr, res.stdout + res.stderr


def test_no_secret_literal_in_compose_file():
    text = COMPOSE_FILE.read_text()
    # every password comes from a required variable (${VAR:?...}), never a default (${VAR:-...})
    assert not re.search(r"\$\{LIFTWATCH_[A-Z_]*PASSWORD:?-", text), (
        "a password variable has a default"
    )
    for var in REQUIRED_VARS:
        for m in re.finditer(r"\$\{" + var + r"(\W)", text):
            assert m.group(1) in ("}", ":"), m.group(0)
            if m.group(1) == ":":
                assert text[m.end()] == "?", f"{var} must be required (${{{var}:?...}})"


def test_interpolated_secrets_reach_the_services(config):
    svcs = config["services"]
    assert svcs["timescaledb"]["environment"]["POSTGRES_PASSWORD"] == DUMMY["LIFTWATCH_DB_PASSWORD"]
    for name, svc in liftwatch_services(config).items():
        env = svc["environment"]
        assert env["LIFTWATCH_ENV"] == "production", name
        assert (
            f":{DUMMY['LIFTWATCH_DB_PASSWORD']}@timescaledb:5432/" in env["LIFTWATCH_DATABASE_URL"]
        ), name
        assert (
            env["LIFTWATCH_MQTT_URL"]
            == f"mqtt://ingest:{DUMMY['LIFTWATCH_MQTT_INGEST_PASSWORD']}@mosquitto:1883"
        ), name


# --- wiring --------------------------------------------------------------------------------


def test_expected_services(config):
    svcs = config["services"]
    assert {"timescaledb", "mosquitto", "migrate"} <= svcs.keys()
    assert command(svcs["migrate"]) == ["db", "migrate"]
    assert is_one_shot(svcs["migrate"])
    assert len(ingest_services(config)) >= 2, "expected at least two ingest replicas"


def test_every_long_running_service_has_a_healthcheck(config):
    for name, svc in config["services"].items():
        if is_one_shot(svc):
            continue  # e.g. migrate: runs to completion; dependants wait for its exit code
        hc = svc.get("healthcheck")
        assert hc and not hc.get("disable") and hc.get("test"), f"service {name} has no healthcheck"


def test_ingest_pair_is_active_standby_on_one_session(config):
    """Two replicas, one client id, --lease, no --group: one plain persistent subscription that
    survives Mosquitto's restarts, consumed by the lease holder only (docs/reliability.md)."""
    ids = set()
    for name, svc in ingest_services(config).items():
        cmd = command(svc)
        assert "--lease" in cmd or svc["environment"].get("LIFTWATCH_INGEST_LEASE") == "true", name
        assert option(cmd, "--group") is None and "LIFTWATCH_INGEST_GROUP" not in svc["environment"], (
            f"{name}: a shared group on Mosquitto loses messages across broker restarts")
        assert "--allow-volatile-group" not in cmd, name
        client_id = option(cmd, "--client-id") or svc["environment"].get("LIFTWATCH_INGEST_CLIENT_ID")
        assert client_id and "$" not in client_id and "{" not in client_id, f"{name}: no stable client id"
        ids.add(client_id)
        assert svc.get("restart") == "unless-stopped", name
    assert len(ingest_services(config)) == 2
    assert len(ids) == 1, f"the pair must share one client id (one session): {ids}"


def test_ingest_healthcheck_probes_the_metrics_port(config):
    for name, svc in ingest_services(config).items():
        port = svc["environment"].get("LIFTWATCH_METRICS_PORT", "9464")
        test = " ".join(svc["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/metrics" in test, (
            f"{name}: healthcheck does not probe metrics port {port}"
        )


def test_depends_on_waits_for_health_or_completion(config):
    svcs = config["services"]
    for name, svc in liftwatch_services(config).items():
        deps = svc.get("depends_on")
        assert isinstance(deps, dict) and deps, f"{name}: depends_on must name conditions"
        assert "timescaledb" in deps, name
        for dep, spec in deps.items():
            cond = (spec or {}).get("condition")
            target = svcs[dep]
            if is_one_shot(target):
                assert cond == "service_completed_successfully", f"{name} -> {dep}: {cond}"
            else:
                assert cond == "service_healthy", f"{name} -> {dep}: {cond}"
                assert target.get("healthcheck"), (
                    f"{name} waits for {dep}, which has no healthcheck"
                )
    for name in ingest_services(config):
        deps = svcs[name]["depends_on"]
        assert {"timescaledb", "mosquitto", "migrate"} <= deps.keys(), name


def test_ingest_gets_time_to_flush_on_sigterm(config):
    for name, svc in ingest_services(config).items():
        assert svc.get("stop_grace_period") in ("30s", 30, "30"), (
            f"{name}: {svc.get('stop_grace_period')!r}"
        )


# --- broker configuration ------------------------------------------------------------------


def _mosquitto_conf() -> dict[str, list[str]]:
    opts: dict[str, list[str]] = {}
    for line in (ROOT / "deploy" / "mosquitto.conf").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            opts.setdefault(key, []).append(value.strip())
    return opts


def test_mosquitto_conf_production_settings():
    opts = _mosquitto_conf()
    expect = {
        "listener": "1883",
        "allow_anonymous": "false",
        "persistence": "true",
        "persistence_location": "/mosquitto/data/",
        "autosave_on_changes": "false",
        "max_queued_messages": "0",  # the default 1000 drops an offline ingestor's QoS 1 backlog
        "max_inflight_messages": "0",
        "message_size_limit": "1048576",
        "persistent_client_expiration": "14d",
        "password_file": "/mosquitto/config/passwd",
        "acl_file": "/mosquitto/config/acl",
    }
    for key, value in expect.items():
        assert opts.get(key) == [value], f"mosquitto.conf {key}: {opts.get(key)} != [{value!r}]"
    assert 0 < int(opts["autosave_interval"][0]) <= 300
    assert "stdout" in opts.get("log_dest", [])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
