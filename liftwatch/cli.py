"""`liftwatch` — one command line for every Liftwatch process. Commands are thin wrappers."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from liftwatch import __version__
from liftwatch.errors import LiftwatchError
from liftwatch.settings import get_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="liftwatch")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING… (default: LIFTWATCH_LOG_LEVEL or INFO)")
@click.option("--log-json", is_flag=True, default=None, help="one JSON object per log line")
def cli(log_level: str | None, log_json: bool | None) -> None:
    """Liftwatch: elevator telemetry over MQTT into TimescaleDB, and paperless maintenance.

    Configuration comes from LIFTWATCH_* environment variables; the important ones are
    LIFTWATCH_DATABASE_URL (postgresql://…) and LIFTWATCH_MQTT_URL (mqtt://[user:pass@]host:port).
    Run `liftwatch COMMAND --help` for each command.
    """
    from liftwatch.logs import setup_logging

    settings = get_settings()
    setup_logging(log_level or settings.log_level, as_json=bool(log_json or settings.log_json))


# --- db ---------------------------------------------------------------------------------------

@cli.group()
def db() -> None:
    """Database schema: migrate and inspect."""


@db.command("migrate")
@click.option("--no-create", is_flag=True, help="do not create the database if it is missing")
def db_migrate(no_create: bool) -> None:
    """Apply pending migrations (safe to run twice, and from several processes at once).

    Creates the database named in LIFTWATCH_DATABASE_URL when it does not exist yet, and
    refuses to start when the timescaledb extension is missing or not preloaded.
    """
    from liftwatch import db as dbmod

    applied = dbmod.migrate(get_settings().database_url, create_database=not no_create)
    if applied:
        for m in applied:
            click.echo(f"applied {m.version:04d}_{m.name}")
    else:
        click.echo("schema is up to date")


@db.command("status")
def db_status() -> None:
    """Show applied and pending migrations."""
    from liftwatch import db as dbmod

    with dbmod.connect(get_settings().database_url) as conn:
        done = set(dbmod.applied_versions(conn))
    for m in dbmod.load_migrations():
        click.echo(f"{'applied' if m.version in done else 'PENDING'}  {m.version:04d}_{m.name}")


@db.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def db_backup(file: Path) -> None:
    """Dump the whole database (pg_dump custom format) to FILE, with a row-count manifest FILE.counts.json."""
    import json

    from liftwatch import backup

    dsn = get_settings().database_url
    size = backup.backup(dsn, file)
    manifest = backup.counts(dsn)
    file.with_name(file.name + ".counts.json").write_text(json.dumps(manifest, indent=1))
    click.echo(f"wrote {file} ({size / 1e6:.1f} MB): " + ", ".join(f"{k} {v}" for k, v in manifest.items()))


@db.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--into", "target", required=True, help="DSN of a NEW database to create and restore into")
def db_restore(file: Path, target: str) -> None:
    """Restore FILE into a new database (timescaledb_pre_restore / post_restore around pg_restore),
    then verify the signature ledger and compare row counts with FILE.counts.json if present."""
    import json

    from liftwatch import backup
    from maintenance.ledger import verify

    backup.restore(file, target)
    got = backup.counts(target)
    manifest = file.with_name(file.name + ".counts.json")
    if manifest.exists():
        want = json.loads(manifest.read_text())
        diff = {k: (want[k], got.get(k)) for k in want if want[k] != got.get(k)}
        if diff:
            raise click.ClickException(f"row counts differ after restore (backup, restored): {diff}")
    from liftwatch import db as dbmod

    with dbmod.connect(target) as conn:
        report = verify(conn)
    if not report.ok:
        raise click.ClickException(f"restored ledger does not verify at entry {report.first_bad_seq}: {report.problem}")
    click.echo(f"restored into {dbmod.redact(target)}: counts match, ledger OK ({report.entries} entries)")


# --- units ------------------------------------------------------------------------------------

def _units_import_help() -> str:
    from liftwatch.registry import columns_help

    return (
        "Import (upsert by unit_id) the units in a CSV file ('-' for stdin).\n\n"
        "The whole file is applied in one transaction: a bad row is reported with its line\n"
        "number and nothing of the file is applied. Sites and companies named in a row are\n"
        "created or updated too.\n\n\b\nColumns:\n" + columns_help()
    )


@cli.group()
def units() -> None:
    """The unit registry (elevators, their sites and companies)."""


@units.command("import", help=_units_import_help())
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
def units_import(file) -> None:
    from liftwatch import db as dbmod
    from liftwatch.registry import import_units

    with dbmod.connect(get_settings().database_url) as conn:
        result = import_units(conn, file)
    click.echo(
        f"{result.rows} rows: {result.inserted} inserted, {result.updated} updated, {result.unchanged} unchanged"
    )


@units.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="file (default: stdout)")
def units_export(output: Path | None) -> None:
    """Write every unit as CSV in the import format (a round trip changes nothing)."""
    from liftwatch import db as dbmod
    from liftwatch.registry import export_units

    with dbmod.connect(get_settings().database_url) as conn:
        if output is None:
            n = export_units(conn, sys.stdout)
        else:
            with output.open("w", encoding="utf-8", newline="") as fh:
                n = export_units(conn, fh)
    click.echo(f"exported {n} units", err=True)


# --- ingest -----------------------------------------------------------------------------------

@cli.command("ingest")
@click.option("--group", default=None,
              help="shared-subscription group, for several replicas splitting the load on a cluster broker "
                   "(default: LIFTWATCH_INGEST_GROUP; unset = plain subscription). Refused on a broker not known "
                   "to keep shared subscriptions across a restart (Mosquitto)")
@click.option("--allow-volatile-group", is_flag=True, default=None,
              help="run --group without that check: the broker was verified otherwise, or losing the messages "
                   "published while the group is gone is acceptable (default: LIFTWATCH_INGEST_ALLOW_VOLATILE_GROUP)")
@click.option("--client-id", default=None,
              help="stable MQTT client id; each replica of a group needs its own, the two of a --lease pair "
                   "share one (default: LIFTWATCH_INGEST_CLIENT_ID or liftwatch-ingest-<hostname>)")
@click.option("--lease", is_flag=True, default=None,
              help="active/standby pair: consume only while holding the client id's lease in PostgreSQL; "
                   "the standby takes over when the holder dies (default: LIFTWATCH_INGEST_LEASE)")
def ingest_cmd(group: str | None, allow_volatile_group: bool | None, client_id: str | None,
               lease: bool | None) -> None:
    """Consume lift/+/telemetry and lift/+/event over MQTT and write them into TimescaleDB.

    Acknowledges each message only after its batch has committed (nothing is lost on a crash;
    redeliveries are stored once). Bad messages are recorded in rejected_messages with a
    reason. Without --group the ingestor subscribes plainly, which a broker restart never
    loses; two such replicas started with --lease and one --client-id form an active/standby
    pair (the production default). Replicas in one --group share the load
    ($share/<group>/...), for a cluster broker that keeps shared subscriptions (see
    docs/deploy.md). Stops cleanly on SIGTERM/Ctrl-C, handing the lease over.
    Prometheus metrics on LIFTWATCH_METRICS_PORT (default 9464, 0 disables).
    """
    from ingest.service import IngestOptions, Ingestor, default_client_id

    settings = get_settings()
    options = IngestOptions(
        group=group or settings.ingest_group,
        client_id=client_id or settings.ingest_client_id or default_client_id(),
        lease=settings.ingest_lease if lease is None else lease,
        allow_volatile_group=(settings.ingest_allow_volatile_group if allow_volatile_group is None
                              else allow_volatile_group),
    )
    Ingestor(settings, options).run()


@cli.command("rejects")
@click.option("--since", default="24 hours", show_default=True, help="PostgreSQL interval to look back")
def rejects_cmd(since: str) -> None:
    """Summarise rejected messages by reason and unit (which devices are misconfigured)."""
    from liftwatch import db as dbmod

    with dbmod.connect(get_settings().database_url) as conn:
        rows = conn.execute(
            """SELECT reason, COALESCE(unit_id, '(unparseable topic)'), count(*), max(received_at),
                      (array_agg(detail ORDER BY received_at DESC))[1]
                 FROM rejected_messages WHERE received_at > now() - %s::interval
                GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 200""",
            (since,),
        ).fetchall()
    if not rows:
        click.echo(f"no rejected messages in the last {since}")
        return
    click.echo(f"{'reason':<16} {'unit':<24} {'count':>7}  last seen                  last detail")
    for reason, unit, count, last, detail in rows:
        click.echo(f"{reason:<16} {unit[:24]:<24} {count:>7}  {last:%Y-%m-%d %H:%M:%S%z}  {detail[:60]}")


# --- devices ----------------------------------------------------------------------------------------

@cli.group()
def devices() -> None:
    """Per-unit broker logins (LIFTWATCH_BROKER_PASSWD_FILE, LIFTWATCH_BROKER_ACL_FILE)."""


def _reload(pid: int | None) -> None:
    from liftwatch.devices import reload_broker

    if pid:
        reload_broker(pid)
        click.echo(f"broker (pid {pid}) asked to reload its password and ACL files")
    else:
        click.echo("reload the broker to apply: kill -HUP <mosquitto pid> (or docker-compose kill -s HUP mosquitto)")


def _broker_files(s) -> tuple[Path | None, Path | None]:
    """Mosquitto's password and ACL files; none when LIFTWATCH_BROKER_PASSWD_FILE is empty (EMQX asks
    `liftwatch broker-hook` instead)."""
    if not s.broker_passwd_file:
        return None, None
    return Path(s.broker_passwd_file), Path(s.broker_acl_file)


@devices.command("provision")
@click.argument("name")
@click.option("--reload-pid", type=int, default=None, help="send SIGHUP to this Mosquitto pid afterwards")
@click.option("--password-stdin", is_flag=True,
              help="take the secret from standard input instead of generating one (32+ characters; e.g. the "
                   "ingest password a compose file already uses)")
def devices_provision(name: str, reload_pid: int | None, password_stdin: bool) -> None:
    """Create (or rotate) the broker login of unit NAME, or of a service account (ingest,
    simulator, dispatcher). Prints a generated secret ONCE; only hashes are kept (Mosquitto's
    password file, and the database for `liftwatch broker-hook`)."""
    from liftwatch import db as dbmod
    from liftwatch import devices as dev

    s = get_settings()
    chosen = sys.stdin.readline().rstrip("\n") if password_stdin else None
    passwd_file, acl_file = _broker_files(s)
    with dbmod.connect(s.database_url) as conn:
        secret = dev.provision(conn, name, passwd_file=passwd_file, acl_file=acl_file, secret=chosen)
    if chosen is None:
        click.echo(f"username: {name}\npassword: {secret}\n(shown once: put it in the device's configuration now)")
    else:
        click.echo(f"username: {name} provisioned with the given secret")
    if passwd_file is not None:
        _reload(reload_pid)


@devices.command("revoke")
@click.argument("name")
@click.option("--reload-pid", type=int, default=None, help="send SIGHUP to this Mosquitto pid afterwards")
def devices_revoke(name: str, reload_pid: int | None) -> None:
    """Remove the broker login of unit or service NAME."""
    from liftwatch import db as dbmod
    from liftwatch import devices as dev

    s = get_settings()
    passwd_file, _ = _broker_files(s)
    with dbmod.connect(s.database_url) as conn:
        dev.revoke(conn, name, passwd_file=passwd_file)
    click.echo(f"{name} revoked" + ("" if passwd_file else " (EMQX: also kick its live connection, docs/deploy.md)"))
    if passwd_file is not None:
        _reload(reload_pid)


@devices.command("list")
def devices_list() -> None:
    """Broker logins and their state."""
    from liftwatch import db as dbmod

    with dbmod.connect(get_settings().database_url) as conn:
        rows = conn.execute("SELECT username, account_kind, provisioned_at, rotated_at, revoked_at "
                            "FROM device_credentials ORDER BY account_kind DESC, username").fetchall()
    for user, kind, prov, rot, rev in rows:
        state = f"revoked {rev:%Y-%m-%d %H:%M}" if rev else "active"
        click.echo(f"{user:<24} {kind:<8} provisioned {prov:%Y-%m-%d %H:%M}"
                   f"{f', rotated {rot:%Y-%m-%d %H:%M}' if rot else ''}  {state}")


@cli.command("broker-hook")
@click.option("--host", default=None, help="listen address (default: LIFTWATCH_BROKER_HOOK_HOST or 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (default: LIFTWATCH_BROKER_HOOK_PORT or 8081)")
def broker_hook_cmd(host: str | None, port: int | None) -> None:
    """Serve EMQX's HTTP authentication (POST /mqtt/auth: the login, and the account's ACL rules in the
    answer) and authorization (POST /mqtt/acl) from the device logins in the database: the same rules
    `liftwatch devices` writes for Mosquitto. For the broker's network only; see docs/deploy.md."""
    import uvicorn

    from liftwatch.devicehook import create_app

    settings = get_settings()
    uvicorn.run(create_app(settings), host=host or settings.broker_hook_host,
                port=port or settings.broker_hook_port, log_config=None, proxy_headers=False)


# --- maintenance ----------------------------------------------------------------------------------

@cli.command("api")
@click.option("--host", default=None, help="listen address (default: LIFTWATCH_API_HOST or 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (default: LIFTWATCH_API_PORT or 8000)")
def api_cmd(host: str | None, port: int | None) -> None:
    """Serve the JSON API (/api/v1, OpenAPI docs at /docs) and the web pages."""
    import uvicorn

    from maintenance.app import SERVER_OPTIONS, create_app

    settings = get_settings()
    uvicorn.run(create_app(settings), host=host or settings.api_host, port=port or settings.api_port,
                **SERVER_OPTIONS)


@cli.group()
def users() -> None:
    """Accounts (people who log in)."""


@users.command("add")
@click.option("--username", required=True, help="login name")
@click.option("--name", required=True, help="printed name (appears in signatures)")
@click.option("--role", required=True, type=click.Choice(["admin", "supervisor", "company_manager", "technician", "user_unit"]))
@click.option("--company", default=None, help="company id (required for all roles but admin and supervisor)")
@click.option("--certificate", default=None, help="technician's certificate number (特种设备作业人员证)")
@click.option("--password-stdin", is_flag=True, required=True, help="read the password from standard input")
def users_add(username: str, name: str, role: str, company: str | None, certificate: str | None,
              password_stdin: bool) -> None:
    """Create a person and their login. The password is read from stdin, never from argv."""
    from psycopg.rows import dict_row

    from liftwatch import db as dbmod
    from maintenance.auth import add_user

    password = sys.stdin.readline().rstrip("\n")
    with dbmod.connect(get_settings().database_url, row_factory=dict_row) as conn:
        user_id, person_id = add_user(conn, username=username, name=name, role=role, company_id=company,
                                      password=password, certificate_no=certificate)
    click.echo(f"user {username} created (user_id {user_id}, person_id {person_id}, role {role})")


@cli.group()
def keys() -> None:
    """Signing keys for the CLI (browsers make their own)."""


@keys.command("new")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def keys_new(path: Path) -> None:
    """Generate an Ed25519 private key in PATH (mode 0600, never overwritten) and print the
    base64url public key to enrol with POST /api/v1/keys."""
    from liftwatch import esign

    try:
        raw = esign.new_key_file(path)
    except FileExistsError:
        raise click.ClickException(f"{path} exists; refusing to overwrite a key") from None
    click.echo(esign.b64url(raw))


@cli.group()
def ledger() -> None:
    """The hash-chained signature ledger."""


@ledger.command("verify")
def ledger_verify() -> None:
    """Re-check every signature, record hash and chain link; name the first bad entry (exit 1)."""
    from liftwatch import db as dbmod
    from maintenance.ledger import verify

    with dbmod.connect(get_settings().database_url) as conn:
        report = verify(conn)
    if report.ok:
        click.echo(f"ledger OK: {report.entries} entries, every signature and link verified")
        return
    click.echo(f"LEDGER BROKEN at entry {report.first_bad_seq}: {report.problem}", err=True)
    for p in report.problems[1:20]:
        click.echo(f"  also: {p}", err=True)
    sys.exit(1)


@cli.group()
def maintenance() -> None:
    """Maintenance plans and work orders."""


@maintenance.command("schedule")
def maintenance_schedule() -> None:
    """Create the four statutory plans for every unit that has a checklist, and the next work
    order of each plan that has none waiting (safe to run any number of times)."""
    from psycopg.rows import dict_row

    from liftwatch import db as dbmod
    from maintenance.schedule import schedule

    with dbmod.connect(get_settings().database_url, row_factory=dict_row) as conn:
        r = schedule(conn)
    click.echo(f"{r.plans_created} plans and {r.orders_created} work orders created, {r.orders_redated} re-dated"
               + (f"; {r.units_without_checklist} units are of a kind no checklist applies to"
                  if r.units_without_checklist else ""))


def _maintenance_import_help() -> str:
    from maintenance.legacy import import_help

    return import_help()


@maintenance.command("import", help=_maintenance_import_help())
@click.argument("file", type=click.File("rb"))
def maintenance_import(file) -> None:
    from zoneinfo import ZoneInfo

    from psycopg.rows import dict_row

    from liftwatch import db as dbmod
    from maintenance.legacy import import_legacy

    settings = get_settings()
    data = file.read()
    with dbmod.connect(settings.database_url, row_factory=dict_row) as conn:
        r = import_legacy(conn, data, tz=ZoneInfo(settings.display_tz))
    click.echo(f"{r.rows} rows: {r.inserted} legacy records imported, {r.unchanged} already present "
               f"(file sha256 {r.sha256[:12]}…); {r.plans_created} plans and {r.orders_created} work orders "
               f"created, {r.orders_redated} waiting orders re-dated from the imported visits")


# --- analytics -----------------------------------------------------------------------------------

def _pass_options(settings):
    from datetime import timedelta

    from analytics import rules
    from analytics.run import PassOptions

    return PassOptions(
        max_advised_days=settings.max_advised_interval_days,
        grace=timedelta(hours=settings.analytics_grace_hours),
        retention=timedelta(days=settings.retention_days) if settings.retention_days else None,
        rules=rules.RuleParams(offline_after=timedelta(minutes=settings.offline_after_min),
                               countersign_after=timedelta(hours=settings.countersign_after_h),
                               frequent_fault_threshold=settings.frequent_fault_threshold),
    )


@cli.group()
def analytics() -> None:
    """Rollups, alert rules and the anomaly model."""


@analytics.command("run")
def analytics_run() -> None:
    """One pass: update rollups, apply retention, evaluate every rule, reconcile alerts."""
    from analytics.run import run_pass

    settings = get_settings()
    r = run_pass(settings.database_url, _pass_options(settings))
    click.echo(f"run {r['run_id']}: {r['alerts_opened']} alerts opened, {r['alerts_resolved']} resolved, "
               f"{r['open_alerts']} open; {r['hourly_rows']} hourly rollup rows in {r['duration_s']:.1f} s")


@analytics.command("loop")
@click.option("--every", default=None, help="period, e.g. 60s or 5m (default: LIFTWATCH_ANALYTICS_EVERY_S)")
@click.option("--no-schedule", is_flag=True, help="do not create the next maintenance work orders each pass")
def analytics_loop(every: str | None, no_schedule: bool) -> None:
    """Run a pass (and `maintenance schedule`) every period until SIGTERM/Ctrl-C. A failed pass is
    logged and retried at the next period."""
    import logging
    import signal
    import threading

    from psycopg.rows import dict_row

    from analytics.run import run_pass
    from liftwatch import db as dbmod
    from maintenance.schedule import schedule

    settings = get_settings()
    period = _parse_period(every) if every else settings.analytics_every_s
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log = logging.getLogger("liftwatch.analytics")
    opts = _pass_options(settings)
    while not stop.is_set():
        try:
            if not no_schedule:
                with dbmod.connect(settings.database_url, row_factory=dict_row) as conn:
                    schedule(conn)
            run_pass(settings.database_url, opts)
        except Exception:  # keep looping: the next pass may succeed (database back, etc.)
            log.exception("analytics pass failed")
        stop.wait(period)


@analytics.command("health")
@click.option("--max-age", type=float, default=300, show_default=True, help="seconds")
def analytics_health(max_age: float) -> None:
    """Exit 0 if an analytics pass succeeded within --max-age seconds, else 1 (a health check)."""
    from liftwatch import db as dbmod

    with dbmod.connect(get_settings().database_url) as conn:
        age = conn.execute("SELECT extract(epoch FROM now() - max(finished_at)) FROM analytics_runs "
                           "WHERE status = 'ok'").fetchone()[0]
    if age is None or age > max_age:
        click.echo(f"unhealthy: last successful pass {'never' if age is None else f'{age:.0f} s ago'}", err=True)
        sys.exit(1)
    click.echo(f"ok: last successful pass {age:.0f} s ago")


def _parse_period(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a period like 60s, 5m or 1h") from None


# --- simulate ---------------------------------------------------------------------------------

@cli.group()
def simulate() -> None:
    """Simulated elevator fleet and technicians (with ground truth). See docs/simulator.md."""


def _attach_simulators() -> None:
    # simulators/cli.py imports only click at module level, so `liftwatch --help` stays fast
    from liftwatch.cli_replay import past_visits_cmd
    from simulators.cli import fleet_cmd, legacy_cmd, technicians_cmd

    simulate.add_command(fleet_cmd)
    simulate.add_command(technicians_cmd)
    simulate.add_command(legacy_cmd)
    simulate.add_command(past_visits_cmd)


_attach_simulators()


def main() -> None:
    """Console-script entry point: a LiftwatchError becomes its message and exit code 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except LiftwatchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # settings validation and friends: say it plainly
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            click.echo(f"error: invalid configuration:\n{exc}", err=True)
            sys.exit(1)
        raise
