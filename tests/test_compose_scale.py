"""docker-compose.scale.yml (the EMQX scale-out overlay) renders with docker-compose.yml, carries no
default secret, and is wired as docs/deploy.md says: three open-source EMQX nodes, every login
and ACL through `liftwatch broker-hook`, N ingestors in one group spread over the nodes, and
the Mosquitto half of the default stack switched off."""

from __future__ import annotations

import re

import pytest
from compose_support import (
    COMPOSE_FILE,
    DUMMY,
    ROOT,
    command,
    ingest_services,
    is_one_shot,
    option,
    render,
    run_compose,
)

SCALE_FILE = ROOT / "docker-compose.scale.yml"
FILES = (COMPOSE_FILE, SCALE_FILE)
SCALE_VARS = ("LIFTWATCH_EMQX_COOKIE", "LIFTWATCH_EMQX_DASHBOARD_PASSWORD", "LIFTWATCH_BROKER_HOOK_TOKEN")
SCALE_DUMMY = {**DUMMY, "LIFTWATCH_EMQX_COOKIE": "dummy-cookie-5b1e0123456789abcdef0123",
               "LIFTWATCH_EMQX_DASHBOARD_PASSWORD": "dummy-dash-pw-22c7",
               "LIFTWATCH_BROKER_HOOK_TOKEN": "dummy-hook-token-0123456789abcdef0123"}
NODES = ("emqx1", "emqx2", "emqx3")


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    return render(tmp_path_factory.mktemp("compose-scale"), SCALE_DUMMY, FILES)


def _active(config: dict) -> dict[str, dict]:
    """The services `up` starts (those with a profile need it named)."""
    return {n: s for n, s in config["services"].items() if not s.get("profiles")}


def test_overlay_renders_with_the_required_vars(tmp_path):
    res = run_compose(["config", "-q"], tmp_path, SCALE_DUMMY, FILES)
    assert res.returncode == 0, f"docker-compose config -q failed:\n{res.stdout}\n{res.stderr}"


@pytest.mark.parametrize("missing", [*DUMMY, *SCALE_VARS])
def test_overlay_refuses_to_render_without_secret(tmp_path, missing):
    env = {k: v for k, v in SCALE_DUMMY.items() if k != missing}
    res = run_compose(["config", "-q"], tmp_path, env, FILES)
    assert res.returncode != 0, f"rendered without {missing}: a default secret?"
    assert missing in res.stdout + res.stderr


def test_no_secret_has_a_default():
    text = SCALE_FILE.read_text()
    assert not re.search(r"\$\{LIFTWATCH_[A-Z_]*:?-", text), "a variable has a default"
    for var in (*DUMMY, *SCALE_VARS):
        for m in re.finditer(r"\$\{" + var + r"(\W)", text):
            assert m.group(1) == ":" and text[m.end()] == "?", f"{var} must be required (${{{var}:?...}})"


def test_the_mosquitto_half_is_off_and_the_cluster_on(config):
    active = _active(config)
    assert "mosquitto" not in active and "ingest-1" not in active and "ingest-2" not in active
    assert {"timescaledb", "migrate", "api", "analytics", "broker-hook", "mqtt-lb", *NODES} <= active.keys()
    for name, svc in active.items():
        deps = svc.get("depends_on") or {}
        assert "mosquitto" not in deps, f"{name} waits for the switched-off broker"
        url = (svc.get("environment") or {}).get("LIFTWATCH_MQTT_URL", "")
        assert "@mosquitto:" not in url, f"{name} still points at Mosquitto"


def test_emqx_is_an_open_source_cluster_image_with_the_hook_as_its_only_authority(config):
    active = _active(config)
    seeds = None
    for node in NODES:
        svc = active[node]
        image = svc["image"]
        m = re.fullmatch(r"emqx/emqx:(\d+)\.(\d+)\.(\d+)", image)
        assert m, f"{node}: pin an exact emqx/emqx version, got {image}"
        # 5.8 is the last Apache-2.0 line that clusters (5.9+ is BSL, one node without a license);
        # ACL rules in the authentication answer need 5.8
        assert (int(m[1]), int(m[2])) == (5, 8), image
        env = svc["environment"]
        assert env["EMQX_NODE_NAME"] == f"emqx@{node}.liftwatch"
        assert f"{node}.liftwatch" in svc["networks"]["default"]["aliases"]
        assert env["EMQX_CLUSTER__DISCOVERY_STRATEGY"] == "static"
        seeds = seeds or env["EMQX_CLUSTER__STATIC__SEEDS"]
        assert env["EMQX_CLUSTER__STATIC__SEEDS"] == seeds and all(f"emqx@{n}.liftwatch" in seeds for n in NODES)
        assert env["EMQX_NODE__COOKIE"] == SCALE_DUMMY["LIFTWATCH_EMQX_COOKIE"]
        assert env["EMQX_DASHBOARD__DEFAULT_PASSWORD"] == SCALE_DUMMY["LIFTWATCH_EMQX_DASHBOARD_PASSWORD"]
        assert env["EMQX_AUTHENTICATION__1__BACKEND"] == "http"
        assert env["EMQX_AUTHENTICATION__1__URL"] == "http://broker-hook:8081/mqtt/auth"
        body = env["EMQX_AUTHENTICATION__1__BODY"]
        for field in ("username", "password", "clientid"):  # EMQX placeholders, not compose variables
            assert f'{field} = "${{{field}}}"' in body, body
        assert f"Bearer {SCALE_DUMMY['LIFTWATCH_BROKER_HOOK_TOKEN']}" in env["EMQX_AUTHENTICATION__1__HEADERS"]
        assert env["EMQX_AUTHORIZATION__SOURCES"] == "[]" and env["EMQX_AUTHORIZATION__NO_MATCH"] == "deny"
        assert env["EMQX_MQTT__MAX_MQUEUE_LEN"] == "infinity", "the default 1000 drops an away ingestor's share"
        assert "emqx-data" in svc["volumes"][0] or f"{node}-data" in str(svc["volumes"][0])
        for p in svc.get("ports", []):
            published = str(p.get("host_ip", "")) if isinstance(p, dict) else str(p)
            assert "127.0.0.1" in published, f"{node}: only the load balancer is published, got {p}"


def test_the_hook_is_internal_and_holds_the_token(config):
    hook = _active(config)["broker-hook"]
    assert command(hook)[:1] == ["broker-hook"] and option(command(hook), "--port") == "8081"
    assert not hook.get("ports"), "the hook must not be published"
    assert hook["environment"]["LIFTWATCH_BROKER_HOOK_TOKEN"] == SCALE_DUMMY["LIFTWATCH_BROKER_HOOK_TOKEN"]
    assert hook["environment"]["LIFTWATCH_BROKER_PASSWD_FILE"] == ""
    assert "8081/healthz" in " ".join(hook["healthcheck"]["test"])


def test_ingestors_share_one_group_spread_over_the_nodes(config):
    group_members = {n: s for n, s in ingest_services(config).items() if not s.get("profiles")}
    assert len(group_members) >= 3
    groups, ids, nodes = set(), set(), []
    for name, svc in group_members.items():
        cmd = command(svc)
        groups.add(option(cmd, "--group"))
        ids.add(option(cmd, "--client-id"))
        assert "--allow-volatile-group" not in cmd and "--lease" not in cmd, name
        host = re.search(r"@([^:/]+):1883$", svc["environment"]["LIFTWATCH_MQTT_URL"]).group(1)
        assert host in NODES, f"{name}: pin it to a node, not the load balancer ({host})"
        nodes.append(host)
        assert svc["environment"]["LIFTWATCH_METRICS_PORT"] in " ".join(svc["healthcheck"]["test"])
        assert int(svc["environment"]["LIFTWATCH_INGEST_SESSION_EXPIRY_S"]) <= 24 * 3600
        assert svc.get("stop_grace_period") in ("30s", 30, "30") and svc.get("restart") == "unless-stopped"
        assert {"emqx1", "emqx2", "emqx3", "migrate", "timescaledb"} <= svc["depends_on"].keys()
    assert len(groups) == 1 and None not in groups, groups
    assert len(ids) == len(group_members), "every member needs its own client id (its own session)"
    assert len(set(nodes)) == len(NODES), f"members on every node, so one node's restart keeps the group: {nodes}"


def test_long_running_services_have_healthchecks_and_dependencies_wait(config):
    active = _active(config)
    for name, svc in active.items():
        if not is_one_shot(svc):
            hc = svc.get("healthcheck")
            assert hc and not hc.get("disable") and hc.get("test"), f"{name} has no healthcheck"
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in active, f"{name} depends on {dep}, which this stack does not start"
            want = "service_completed_successfully" if is_one_shot(active[dep]) else "service_healthy"
            assert (spec or {}).get("condition") == want, f"{name} -> {dep}"
    lb = active["mqtt-lb"]
    assert any("1883" in str(p) for p in lb["ports"])
    cfg = (ROOT / "deploy" / "emqx" / "haproxy.cfg").read_text()
    for node in NODES:
        assert re.search(rf"^\s*server {node} {node}:1883 check", cfg, re.M), node
