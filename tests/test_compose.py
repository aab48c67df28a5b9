"""docker-compose.yml is valid, carries no default secret, and is wired the way production needs.

Uses the `docker-compose` command (`config` only: no container engine needed). It is installed by
scripts/install-timescaledb.sh; when it is missing these tests FAIL rather than skip.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
REQUIRED_VARS = ("LIFTWATCH_DB_PASSWORD", "LIFTWATCH_MQTT_INGEST_PASSWORD", "LIFTWATCH_JWT_SECRET")
DUMMY = {
    "LIFTWATCH_DB_PASSWORD": "dummy-db-pw-7f3a",
    "LIFTWATCH_MQTT_INGEST_PASSWORD": "dummy-mqtt-pw-91c2",
    "LIFTWATCH_JWT_SECRET": "dummy-jwt-secret-0123456789abcdef0123",
}

# JSON from YAML, run by the interpreter docker-compose v1 itself runs on (it depends on PyYAML).
_YAML_TO_JSON = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail(
            "`docker-compose` is not installed; run scripts/install-timescaledb.sh "
            "(it installs the docker-compose package), then re-run the tests",
            pytrace=False,
        )
    return exe


def _run(
    args: list[str], tmp_path: Path, extra_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """docker-compose ARGS on our file, isolated from the caller's environment and any .env file."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LIFTWATCH_", "COMPOSE_", "DOCKER_"))
        and k != "MQTT_HEALTHCHECK_PASSWORD"
    }
    env.update(extra_env)
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    cmd = [_docker_compose(), "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)


def _python_of(exe: str) -> str | None:
    """The interpreter of a Python console script (docker-compose v1), None for a binary (v2)."""
    with open(exe, "rb") as f:
        first = f.readline(200)
    if not first.startswith(b"#!"):
        return None
    parts = shlex.split(first[2:].decode(errors="replace"))
    if parts and Path(parts[0]).name == "env":
        parts = parts[1:]
    return shutil.which(parts[0]) if parts and "python" in Path(parts[0]).name else None


def _unescape(obj):
    """docker-compose v1 re-escapes `$` as `$$` in its rendered output; undo that."""
    if isinstance(obj, str):
        return obj.replace("$$", "$")
    if isinstance(obj, list):
        return [_unescape(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _unescape(v) for k, v in obj.items()}
    return obj


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    """The fully interpolated compose model (dummy secrets), as a dict."""
    tmp_path = tmp_path_factory.mktemp("compose")
    exe = _docker_compose()
    python = _python_of(exe)
    if python is None:  # docker-compose v2 (Go) renders JSON itself
        res = _run(["config", "--format", "json"], tmp_path, DUMMY)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)
    res = _run(["config"], tmp_path, DUMMY)  # v1 renders YAML only
    assert res.returncode == 0, res.stderr
    try:
        import yaml  # optional: absent from the venv today
    except ImportError:
        conv = subprocess.run(
            [python, "-c", _YAML_TO_JSON],
            input=res.stdout,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert conv.returncode == 0, (
            f"could not convert docker-compose's YAML with {python}: {conv.stderr}"
        )
        return _unescape(json.loads(conv.stdout))
    return _unescape(yaml.safe_load(res.stdout))


def _liftwatch_services(config: dict) -> dict[str, dict]:
    return {name: svc for name, svc in config["services"].items() if "build" in svc}


def _ingest_services(config: dict) -> dict[str, dict]:
    return {
        name: svc
        for name, svc in _liftwatch_services(config).items()
        if _command(svc)[:1] == ["ingest"]
    }


def _command(svc: dict) -> list[str]:
    cmd = svc.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def _option(cmd: list[str], name: str) -> str | None:
    for i, arg in enumerate(cmd):
        if arg == name and i + 1 < len(cmd):
            return cmd[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _is_one_shot(svc: dict) -> bool:
    return str(svc.get("restart", "no")) == "no"


# --- validity and secrets ------------------------------------------------------------------


def test_compose_file_is_valid_with_required_vars(tmp_path):
    res = _run(["config", "-q"], tmp_path, DUMMY)
    assert res.returncode == 0, f"docker-compose config -q failed:\n{res.stdout}\n{res.stderr}"


@pytest.mark.parametrize("missing", REQUIRED_VARS)
def test_compose_refuses_to_render_without_secret(tmp_path, missing):
    env = {k: v for k, v in DUMMY.items() if k != missing}
    res = _run(["config", "-q"], tmp_path, env)
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
    for name, svc in _liftwatch_services(config).items():
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
    assert _command(svcs["migrate"]) == ["db", "migrate"]
    assert _is_one_shot(svcs["migrate"])
    assert len(_ingest_services(config)) >= 2, "expected at least two ingest replicas"


def test_every_long_running_service_has_a_healthcheck(config):
    for name, svc in config["services"].items():
        if _is_one_shot(svc):
            continue  # e.g. migrate: runs to completion; dependants wait for its exit code
        hc = svc.get("healthcheck")
        assert hc and not hc.get("disable") and hc.get("test"), f"service {name} has no healthcheck"


def test_ingest_replicas_have_distinct_stable_client_ids_and_one_group(config):
    ids, groups = {}, set()
    for name, svc in _ingest_services(config).items():
        cmd = _command(svc)
        client_id = _option(cmd, "--client-id") or svc.get("environment", {}).get(
            "LIFTWATCH_INGEST_CLIENT_ID"
        )
        assert client_id, f"{name}: no stable client id (--client-id or LIFTWATCH_INGEST_CLIENT_ID)"
        assert "$" not in client_id and "{" not in client_id, (
            f"{name}: client id {client_id!r} is not stable"
        )
        ids[name] = client_id
        groups.add(
            _option(cmd, "--group")
            or svc.get("environment", {}).get("LIFTWATCH_INGEST_GROUP", "ingest")
        )
        assert svc.get("restart") == "unless-stopped", name
    assert len(set(ids.values())) == len(ids), f"ingest client ids are not distinct: {ids}"
    assert len(groups) == 1, f"ingest replicas must share one group: {groups}"


def test_ingest_healthcheck_probes_the_metrics_port(config):
    for name, svc in _ingest_services(config).items():
        port = svc["environment"].get("LIFTWATCH_METRICS_PORT", "9464")
        test = " ".join(svc["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/metrics" in test, (
            f"{name}: healthcheck does not probe metrics port {port}"
        )


def test_depends_on_waits_for_health_or_completion(config):
    svcs = config["services"]
    for name, svc in _liftwatch_services(config).items():
        deps = svc.get("depends_on")
        assert isinstance(deps, dict) and deps, f"{name}: depends_on must name conditions"
        assert "timescaledb" in deps, name
        for dep, spec in deps.items():
            cond = (spec or {}).get("condition")
            target = svcs[dep]
            if _is_one_shot(target):
                assert cond == "service_completed_successfully", f"{name} -> {dep}: {cond}"
            else:
                assert cond == "service_healthy", f"{name} -> {dep}: {cond}"
                assert target.get("healthcheck"), (
                    f"{name} waits for {dep}, which has no healthcheck"
                )
    for name in _ingest_services(config):
        deps = svcs[name]["depends_on"]
        assert {"timescaledb", "mosquitto", "migrate"} <= deps.keys(), name


def test_ingest_gets_time_to_flush_on_sigterm(config):
    for name, svc in _ingest_services(config).items():
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
