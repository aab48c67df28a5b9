"""`liftwatch broker-hook`, the HTTP hook EMQX asks, against the device ACL matrix (tests/acl_matrix.py),
over real HTTP, with logins provisioned by `liftwatch devices` into the real database.

Two answers are checked for every case of the matrix: the hook's own decision (POST /mqtt/acl)
and the rules it hands EMQX at login (the `acl` of POST /mqtt/auth), read the way EMQX reads
them (first matching rule wins; MQTT wildcards; nothing matched = denied).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import uvicorn
from acl_matrix import (
    DEVICE_SUBSCRIPTIONS,
    SERVICE_CASES,
    SERVICES,
    UNITS,
    foreign_topics,
    own_topics,
)
from helpers import register_units

from liftwatch.devicehook import create_app
from liftwatch.devices import provision
from liftwatch.errors import ConfigurationError
from liftwatch.settings import Settings
from liftwatch.throwaway import free_port

TOKEN = "test-hook-token-0123456789abcdef0123456789"


def _devices(env: dict, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liftwatch", "devices", *args], env=env, capture_output=True,
                          text=True, input=stdin)


class Hook:
    """The hook served by uvicorn on a free port, in a thread of this process."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port,
                                                    log_config=None, proxy_headers=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the hook did not start"
            time.sleep(0.05)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}",
                                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def login(self, username: str, password: str) -> dict:
        r = self.http.post("/mqtt/auth", json={"username": username, "password": password, "clientid": "c"})
        assert r.status_code == 200, r.text
        return r.json()

    def allowed(self, username: str, action: str, topic: str) -> bool:
        r = self.http.post("/mqtt/acl", json={"username": username, "action": action, "topic": topic})
        assert r.status_code == 200, r.text
        return r.json() == {"result": "allow"}

    def close(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture()
def hooked(db_url: str) -> Iterator[tuple[Hook, dict[str, str], dict]]:
    register_units(db_url, UNITS)
    # no Mosquitto files: the EMQX way (LIFTWATCH_BROKER_PASSWD_FILE empty)
    env = {**os.environ, "LIFTWATCH_DATABASE_URL": db_url, "LIFTWATCH_BROKER_PASSWD_FILE": ""}
    r = _devices(env, "provision", UNITS[0])  # once through the command line, the rest in process (faster)
    assert r.returncode == 0, r.stderr
    secrets = {UNITS[0]: re.search(r"password: (\S+)", r.stdout).group(1)}
    with psycopg.connect(db_url, autocommit=True) as conn:
        for name in [*UNITS[1:], *SERVICES]:
            secrets[name] = provision(conn, name, passwd_file=None, acl_file=None)
    hook = Hook(Settings(database_url=db_url, broker_hook_token=TOKEN))
    try:
        yield hook, secrets, env
    finally:
        hook.close()


def _filter_regex(rule: str) -> re.Pattern:
    """An MQTT topic filter as a regular expression over topic names ('+' one level, '#' the rest)."""
    out = []
    for i, level in enumerate(rule.split("/")):
        sep = "/" if i else ""
        if level == "#":
            out.append("(/.*)?" if i else ".*")
            break
        out.append(sep + ("[^/]*" if level == "+" else re.escape(level)))
    return re.compile("^" + "".join(out) + "$")


def _rules_allow(rules: list[dict], action: str, topic: str) -> bool:
    """EMQX's reading of the `acl` handed over at login: the first rule whose action and topic match
    decides; none matching falls to `authorization.no_match = deny` (deploy/emqx)."""
    for r in rules:
        if r["action"] in (action, "all") and (r["topic"] == topic or _filter_regex(r["topic"]).match(topic)):
            return r["permission"] == "allow"
    return False


def _matrix(secrets: dict[str, str]) -> list[tuple[str, str, str, bool]]:
    cases = []
    for unit in UNITS:
        cases += [(unit, "publish", t, True) for t in own_topics(unit)]
        cases += [(unit, "publish", t, False) for t in foreign_topics(unit)]
        cases += [(unit, "subscribe", t, False) for t in DEVICE_SUBSCRIPTIONS]
    return cases + SERVICE_CASES


def test_hook_answers_the_acl_matrix(hooked) -> None:
    hook, secrets, _ = hooked
    cases = _matrix(secrets)
    rules = {name: hook.login(name, secrets[name]) for name in [*UNITS, *SERVICES]}
    assert all(r["result"] == "allow" and r["is_superuser"] is False for r in rules.values())
    wrong = [(u, a, t, want) for u, a, t, want in cases if hook.allowed(u, a, t) != want]
    assert wrong == [], "the hook's decisions differ from the matrix"
    wrong = [(u, a, t, want) for u, a, t, want in cases if _rules_allow(rules[u]["acl"], a, t) != want]
    assert wrong == [], "the rules handed to EMQX at login differ from the matrix"
    assert sum(1 for u, a, t, want in cases if u in UNITS and a == "publish" and not want) == 80
    assert rules["DEV-0"]["acl"][0] == {"permission": "allow", "action": "publish", "topic": "lift/DEV-0/#"}
    # a device's rules grant nothing to read, and end in explicit denials (nothing falls through)
    assert not any(r["action"] == "subscribe" and r["permission"] == "allow" for r in rules["DEV-0"]["acl"])
    assert rules["DEV-0"]["acl"][-2:] == [{"permission": "deny", "action": "all", "topic": "#"},
                                          {"permission": "deny", "action": "all", "topic": "$SYS/#"}]


def test_hook_refuses_bad_logins_and_revoked_ones(hooked, db_url: str) -> None:
    hook, secrets, env = hooked
    assert hook.login("DEV-1", "wrong")["result"] == "deny"
    assert hook.login("DEV-1", secrets["DEV-2"])["result"] == "deny", "another unit's secret"
    assert hook.login("", "")["result"] == "deny", "anonymous"
    assert hook.login("nobody", secrets["DEV-1"])["result"] == "deny"
    assert hook.login("DEV-1", secrets["DEV-1"])["result"] == "allow"
    r = _devices(env, "revoke", "DEV-1")
    assert r.returncode == 0, r.stderr
    assert hook.login("DEV-1", secrets["DEV-1"])["result"] == "deny"
    assert not hook.allowed("DEV-1", "publish", "lift/DEV-1/telemetry"), "a revoked login keeps no rights"
    assert hook.login("DEV-2", secrets["DEV-2"])["result"] == "allow", "the others are unaffected"
    rotated = _devices(env, "provision", "DEV-2")
    assert rotated.returncode == 0
    assert hook.login("DEV-2", secrets["DEV-2"])["result"] == "deny", "a rotated secret replaces the old one"
    with psycopg.connect(db_url, autocommit=True) as c:  # a login from before migration 0015 has no hash
        c.execute("UPDATE device_credentials SET secret_hash = NULL WHERE username = 'DEV-3'")
    assert hook.login("DEV-3", secrets["DEV-3"])["result"] == "deny"


def test_a_chosen_service_secret_is_taken_from_stdin_and_must_be_long(hooked) -> None:
    hook, _, env = hooked
    chosen = "a" * 16 + "0123456789abcdef0123456789"
    r = _devices(env, "provision", "ingest", "--password-stdin", stdin=chosen + "\n")
    assert r.returncode == 0 and chosen not in r.stdout, r.stdout + r.stderr
    assert hook.login("ingest", chosen)["result"] == "allow"
    short = _devices(env, "provision", "ingest", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 32 characters" in short.stderr
    assert hook.login("ingest", chosen)["result"] == "allow", "a refused rotation changes nothing"


def test_the_broker_must_present_the_token(hooked) -> None:
    hook, secrets, _ = hooked
    body = {"username": "DEV-0", "password": secrets["DEV-0"], "clientid": "c"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = httpx.post(f"http://127.0.0.1:{hook.port}/mqtt/auth", json=body, headers=headers, timeout=10)
        assert r.status_code == 401, headers
        r = httpx.post(f"http://127.0.0.1:{hook.port}/mqtt/acl", headers=headers, timeout=10,
                       json={"username": "ingest", "action": "subscribe", "topic": "lift/#"})
        assert r.status_code == 401, headers


def test_hook_refuses_to_start_without_a_token_outside_development(db_url: str) -> None:
    prod = dict(env="production", database_url=db_url.replace("postgres@", "postgres:a-real-db-pw@"),
                mqtt_url="mqtt://ingest:a-real-mqtt-password@127.0.0.1:1883", jwt_secret="j" * 40)
    with pytest.raises(ConfigurationError, match="LIFTWATCH_BROKER_HOOK_TOKEN"):
        create_app(Settings(**prod))
    with pytest.raises(ConfigurationError, match="LIFTWATCH_BROKER_HOOK_TOKEN"):
        create_app(Settings(**prod, broker_hook_token="short"))
    create_app(Settings(**prod, broker_hook_token=TOKEN))  # builds (the pool opens with the lifespan)
