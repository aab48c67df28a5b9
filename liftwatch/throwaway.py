"""Throwaway PostgreSQL+TimescaleDB clusters and Mosquitto brokers on free ports.

Used by the tests, the benchmarks and the chaos runs: each gets servers it may stop, kill
and restart without touching the machine's own. `initdb` and `postgres` refuse to run as
root, so when we are root the cluster runs as the `postgres` user in a directory it owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from liftwatch.errors import ConfigurationError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ConfigurationError(f"server on port {port} exited with {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ConfigurationError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def pg_bindir() -> Path:
    """The bin directory of the local PostgreSQL (PG_CONFIG overrides)."""
    pg_config = os.environ.get("PG_CONFIG") or shutil.which("pg_config")
    if not pg_config:
        raise ConfigurationError("pg_config not found: install postgresql (and run scripts/install-timescaledb.sh)")
    out = subprocess.run([pg_config, "--bindir"], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PgCluster:
    """A private cluster with timescaledb preloaded. fsync is off: tests survive process
    crashes (what they simulate) but not machine crashes, and run several times faster."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="liftwatch-pg-")))
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def init(self) -> PgCluster:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o755)
        subprocess.run(
            _as_postgres([str(pg_bindir() / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                          "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]),
            check=True, capture_output=True,
        )
        opts = {
            "shared_preload_libraries": "timescaledb",
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.root),
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "log_min_messages": "warning",
            **self.settings,
        }
        with (self.datadir / "postgresql.auto.conf").open("a") as fh:
            fh.write(f"port = {self.port}\n")
            for k, v in opts.items():
                fh.write(f"{k} = '{v}'\n")
        return self

    def start(self, timeout: float = 60.0) -> PgCluster:
        subprocess.run(
            _as_postgres([str(pg_bindir() / "pg_ctl"), "-D", str(self.datadir), "-l",
                          str(self.root / "server.log"), "-w", "-t", str(int(timeout)), "start"]),
            check=True, capture_output=True,
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """mode: smart | fast | immediate (immediate = crash, recovery on next start)."""
        subprocess.run(
            _as_postgres([str(pg_bindir() / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"]),
            check=False, capture_output=True,
        )

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join((self.root / "server.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Mosquitto:
    """A private Mosquitto 2 broker. Persistence on and no queue limit, so a persistent
    session keeps every QoS 1 message while its client is away (the default keeps 1000)."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="liftwatch-mqtt-")))
    extra_config: str = ""
    password_file: Path | None = None  # with an ACL file: authentication on, anonymous refused
    acl_file: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        conf = self.root / "mosquitto.conf"
        auth = (["allow_anonymous false", f"password_file {self.password_file}", f"acl_file {self.acl_file}"]
                if self.password_file else ["allow_anonymous true"])
        lines = [
            f"listener {self.port} 127.0.0.1",
            *auth,
            "persistence true",
            f"persistence_location {self.root}/",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # no privilege drop, so it can write its own temp dir
        conf.write_text("\n".join(lines) + "\n" + self.extra_config)
        return conf

    def start(self) -> Mosquitto:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise ConfigurationError("mosquitto not found: run scripts/install-timescaledb.sh (it installs it)")
        conf = self.write_config()
        log = (self.root / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=log)
        wait_for_port(self.port, 15, self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM saves the persistence file; SIGKILL loses what was not saved."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> Mosquitto:
        self.stop()
        return self.start()

    def destroy(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
