"""docker-compose helpers shared by the compose tests: render a file (or an overlay) with dummy
secrets through the real `docker-compose config`, and read services' commands and options.

Uses the `docker-compose` command (`config` only: no container engine needed). It is installed by
scripts/install-timescaledb.sh; when it is missing these tests FAIL rather than skip.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
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


def run_compose(
    args: list[str], tmp_path: Path, extra_env: dict[str, str], files: tuple[Path, ...] = (COMPOSE_FILE,)
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
    cmd = [_docker_compose(), "--env-file", str(empty_env_file), *[a for f in files for a in ("-f", str(f))], *args]
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


def render(tmp_path: Path, env: dict[str, str], files: tuple[Path, ...] = (COMPOSE_FILE,)) -> dict:
    """The fully interpolated compose model, as a dict."""
    exe = _docker_compose()
    python = _python_of(exe)
    if python is None:  # docker-compose v2 (Go) renders JSON itself
        res = run_compose(["config", "--format", "json"], tmp_path, env, files)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)
    res = run_compose(["config"], tmp_path, env, files)  # v1 renders YAML only
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


def liftwatch_services(config: dict) -> dict[str, dict]:
    return {name: svc for name, svc in config["services"].items() if "build" in svc}


def ingest_services(config: dict) -> dict[str, dict]:
    return {
        name: svc
        for name, svc in liftwatch_services(config).items()
        if command(svc)[:1] == ["ingest"]
    }


def command(svc: dict) -> list[str]:
    cmd = svc.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def option(cmd: list[str], name: str) -> str | None:
    for i, arg in enumerate(cmd):
        if arg == name and i + 1 < len(cmd):
            return cmd[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def is_one_shot(svc: dict) -> bool:
    return str(svc.get("restart", "no")) == "no"


