"""`liftwatch simulate fleet` and `liftwatch simulate technicians`: thin wrappers.

Heavy imports (paho, psycopg, the simulator itself) happen inside the commands so that
`liftwatch --help` stays fast.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click


class Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, int | float):
            return float(value)
        from simulators.clock import parse_duration

        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Instant(click.ParamType):
    name = "TIME"

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time (e.g. 2026-11-25T10:00:00+08:00)", param, ctx)
        if t.tzinfo is None:
            self.fail(f"{value!r} has no UTC offset (add Z or +08:00)", param, ctx)
        return t


DURATION = Duration()
INSTANT = Instant()
_FRACTION = click.FloatRange(0.0, 1.0)


@click.command("fleet")
@click.option("--units", type=click.IntRange(1, 1_000_000), default=100, show_default=True,
              help="number of units, named PREFIX-00001... (sites, companies and units are registered if missing)")
@click.option("--duration", "duration_s", type=DURATION, default="1h", show_default=True,
              help="simulated length of the live part (3600, 90s, 60m, 1.5h, 2d); 0 = history only")
@click.option("--speedup", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="simulated time runs this many times faster than the wall clock; 0 = as fast as possible. "
                   "The live window ends when the run ends, so every ts is in the past when it is published")
@click.option("--seed", type=int, default=1, show_default=True, help="same seed, same fleet, same messages")
@click.option("--faulty", type=_FRACTION, default=0.1, show_default=True,
              help="fraction of units given a degradation mechanism (dealt round-robin), with an onset "
                   "between 15 % and 55 % of the simulated span (history included)")
@click.option("--degradation-ramp", "degradation_ramp_s", type=DURATION, default="14d", show_default=True,
              help="time from a degradation's onset to its full severity; shorten it (e.g. 10m) to see "
                   "the effects within a short run")
@click.option("--bad-fraction", type=click.FloatRange(0.0, 0.99), default=0.0, show_default=True,
              help="per good sample or event, the chance of adding one malformed or hostile message "
                   "(all ten reject reasons, dealt in turn across units); they never take a good seq")
@click.option("--samples-per-message", type=click.IntRange(1, 100), default=1, show_default=True,
              help="batch this many telemetry samples of a unit into one JSON array (events go alone)")
@click.option("--history-days", "history_days", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="before the live part, write this many days of past telemetry and events straight into "
                   "the database with COPY (same rows the ingestor writes; history + live within 88 days)")
@click.option("--truth", "truth_path", type=click.Path(dir_okay=False, path_type=Path),
              help="write the ground truth (degradations, faults, visits, bad messages, counts) as JSON")
@click.option("--visits", "visits_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="visit plan from `simulate technicians --plan-only --out` (default: the seed's own plan, which "
                   "is the same one)")
@click.option("--start", type=INSTANT, default=None,
              help="simulated start of the live part (ISO 8601 with offset); default: so the run ends now "
                   "on the wall clock. The whole window must end by the time the run does")
@click.option("--prefix", default="SIM", show_default=True,
              help="prefix of unit, site and company ids (keeps several simulated fleets apart)")
@click.option("--fault-scale", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="multiplies the healthy random fault rates (0 = only degradation-driven faults)")
@click.option("--comm-loss-per-day", "comm_loss_per_day", type=click.FloatRange(min=0.0), default=0.0,
              show_default=True,
              help="terminal outages per unit and day (e.g. 0.02: one per unit in 50 days); what a unit "
                   "produces during one (20 min to 4 days) is lost before the broker, as in the field")
@click.option("--no-register", is_flag=True, help="do not touch the registry (units must exist already)")
@click.option("--dry-run", is_flag=True,
              help="generate and count only, as fast as possible: no database, no broker (measures generation)")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="processes, each simulating every Nth unit end to end (own COPY connection and MQTT "
                   "client); per-unit output is the same for any N. Use the core count for big backfills")
@click.option("--client-id", default=None,
              help="MQTT client id (default liftwatch-sim-<host>-<pid>; workers append -<k>)")
@click.option("--quiet", is_flag=True, help="no progress line on stderr")
def fleet_cmd(units: int, duration_s: float, speedup: float, seed: int, faulty: float, degradation_ramp_s: float,
              bad_fraction: float, samples_per_message: int, history_days: float, truth_path: Path | None,
              visits_file: Path | None, start: datetime | None, prefix: str, fault_scale: float,
              comm_loss_per_day: float, no_register: bool, dry_run: bool, workers: int, client_id: str | None, quiet: bool) -> None:
    """Simulate a fleet of lifts and escalators publishing telemetry and events over MQTT (QoS 1).

    Registers the units (sites with lat/lon in Shanghai, maintenance companies, user units)
    if missing, then, per unit: trips driven by office/residential/commercial traffic, door
    cycles, speed, load, levelling, vibration and motor temperature; modes normal,
    inspection (during maintenance visits), out_of_service, fire_return, stopped;
    fault events raised and cleared, entrapments cleared after a realistic rescue; and for
    the --faulty units one degradation each (door-operator wear, guide-roller wear, brake
    wear, overheating motor, intermittent safety circuit). Retained lift/<unit>/status is
    `online` during the run and `offline` after it.

    Prints a progress line on stderr and a summary on stdout. Needs LIFTWATCH_MQTT_URL and
    (to register and backfill) LIFTWATCH_DATABASE_URL. See docs/simulator.md.
    """
    from liftwatch.settings import get_settings
    from simulators.runner import FleetOptions, run_fleet

    if prefix != prefix.strip() or not prefix:
        raise click.BadParameter("must not be empty", param_hint="--prefix")
    opts = FleetOptions(
        units=units, duration_s=duration_s, speedup=speedup, seed=seed, faulty=faulty, bad_fraction=bad_fraction,
        samples_per_message=samples_per_message, history_s=history_days * 86400.0, start=start, prefix=prefix,
        visits_file=visits_file, degradation_ramp_s=degradation_ramp_s, fault_scale=fault_scale,
        comm_loss_per_day=comm_loss_per_day, truth_path=truth_path, register=not no_register, dry_run=dry_run,
        client_id=client_id, progress=not quiet,
        workers=workers)
    try:
        summary = run_fleet(opts, get_settings())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    for line in summary.lines():
        click.echo(line)
    if truth_path:
        click.echo(f"truth written to {truth_path}")


def _default_api_url() -> str:
    from liftwatch.settings import get_settings

    s = get_settings()
    host = "127.0.0.1" if s.api_host in ("0.0.0.0", "::", "") else s.api_host
    return f"http://{host}:{s.api_port}"


@click.command("technicians")
@click.option("--plan-only", is_flag=True,
              help="only write the plan (JSON) to --out; drives no visit over HTTP and needs no database "
                   "(the behaviour before the API existed)")
@click.option("--duration", "duration_s", type=DURATION, default=None,
              help="length of the window (3600, 90m, 6h, 2d) [default: 30d with --plan-only, else 1h like "
                   "`simulate fleet`]")
@click.option("--days", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="the same as --duration, in days")
@click.option("--speedup", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="driving: the window runs this many times faster than the wall clock; 0 = drive every "
                   "visit at once, in planned order")
@click.option("--units", type=click.IntRange(1, 1_000_000), default=100, show_default=True,
              help="number of units (the same fleet as `simulate fleet --units` with the same seed and prefix)")
@click.option("--seed", type=int, default=1, show_default=True, help="same seed as the fleet simulator")
@click.option("--prefix", default="SIM", show_default=True, help="same prefix as the fleet simulator")
@click.option("--start", type=INSTANT, default=None,
              help="start of the window (ISO 8601 with offset). Default with --plan-only: DURATION before "
                   "now (matches `simulate fleet --history-days`); when driving: so the window ends when the "
                   "run ends, as `simulate fleet` lays out its live part")
@click.option("--visits", "visits_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="drive this plan (from --plan-only --out, possibly edited) instead of the seed's own; its "
                   "visits planned before the window are overdue and driven at once")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the plan (JSON) here [default with --plan-only: visits.json; when driving: not written]")
@click.option("--api-url", envvar="LIFTWATCH_API_URL", default=None,
              help="base URL of `liftwatch api` [env LIFTWATCH_API_URL; default http://LIFTWATCH_API_HOST:"
                   "LIFTWATCH_API_PORT, i.e. http://127.0.0.1:8000]")
@click.option("--accounts", "accounts_path", type=click.Path(dir_okay=False, path_type=Path),
              default=".demo/sim-accounts.json", show_default=True,
              help="credentials file (mode 0600): the simulated accounts' passwords and private signing keys")
@click.option("--bootstrap", is_flag=True,
              help="first create what is missing (needs LIFTWATCH_DATABASE_URL): register the seed's fleet, "
                   "one technician tech-<company> per maintenance company and one safety manager uu-<company> "
                   "per user unit (via `liftwatch users add`), an Ed25519 key each (POST /api/v1/keys), and "
                   "run `liftwatch maintenance schedule` when the units have no open work order")
@click.option("--bootstrap-only", is_flag=True, help="--bootstrap, then stop without driving visits")
@click.option("--truth", "truth_path", type=click.Path(dir_okay=False, path_type=Path),
              help="write the visit truth (JSON): per visit its case, work_order_id, the server's check-in "
                   "time, signed_at, countersigned_at, item results, or the failure with the API's error code")
@click.option("--now", "now_cases", default=None, metavar="CASES",
              help="with --plan-only: instead of the seed's plan, one half-monthly visit per listed case "
                   "(e.g. genuine,genuine,unverified,missing_countersign), each on its own unit (kinds in turn), "
                   "starting --now-in from now and lasting --visit-length: a live demo's visits")
@click.option("--now-in", "now_in_s", type=DURATION, default="15s", show_default=True,
              help="with --now: how soon the first visit starts (the next ones 5 s apart)")
@click.option("--visit-length", "visit_length_s", type=DURATION, default="45s", show_default=True,
              help="with --now: how long each visit lasts on site")
@click.option("--quiet", is_flag=True, help="no progress line on stderr")
def technicians_cmd(plan_only: bool, duration_s: float | None, days: float | None, speedup: float, units: int,
                    seed: int, prefix: str, start: datetime | None, visits_file: Path | None, out: Path | None,
                    api_url: str | None, accounts_path: Path, bootstrap: bool, bootstrap_only: bool,
                    truth_path: Path | None, now_cases: str | None, now_in_s: float, visit_length_s: float,
                    quiet: bool) -> None:
    """Play the technicians: drive the planned maintenance visits through the HTTP API.

    \b
    The plan (simulators/visits.py, the same the fleet simulator uses) gives each unit a visit
    every 14 days with a kind (half_monthly, quarterly, semi_annual, annual) and a case:
      genuine              log in, find the unit's open work order of that kind, check in with
                           the site's position, fill every checklist item (realistic measured
                           values; a few adjusted/replaced, rarely a defect), sign (Ed25519 over
                           RFC 8785 bytes, password again); the user unit's manager countersigns
      unverified           the same over HTTP (the fleet keeps the unit out of inspection mode)
      missing_countersign  the technician signs; nobody countersigns
      skipped              nothing is done: the order stays open and becomes overdue

    \b
    Time: the API stamps check-in and signatures with its own clock and refuses a signed_at
    more than 5 min off it, so visits cannot be back-dated: a history of visits exists only
    from when this command ran. The window is laid out like the fleet's live part (it ends
    when the run ends; --speedup compresses it) and each visit is driven when its planned
    time has come: check-in and checklist at the planned start, signatures at the planned end
    (at the latest the window's end). Visits planned before the window (a --visits file) are
    overdue and driven at once, in order; --speedup 0 drives everything at once, in order.
    Start it together with `simulate fleet` using the same --duration/--speedup (or --start).

    \b
    Accounts: --bootstrap (needs LIFTWATCH_DATABASE_URL) creates them and writes their
    passwords and private keys to --accounts (mode 0600); later runs only read that file.
    When a unit's next order does not exist yet (its previous one was signed), the command
    runs `liftwatch maintenance schedule` (needs LIFTWATCH_DATABASE_URL), as `analytics loop`
    would, and also at each new simulated day after signatures.

    Progress goes to stderr; the summary (visits done per case, failures with the API's error
    code) to stdout. Exit code 1 if any visit failed or the API could not be reached.
    --plan-only writes the plan and stops (no database, no HTTP). See docs/simulator.md.
    """
    from datetime import UTC, timedelta

    from simulators.clock import LOCAL_TZ
    from simulators.fleet import build_fleet
    from simulators.visits import CASES, plan_visits, visits_now, write_plan

    if duration_s is not None and days is not None:
        raise click.UsageError("give --duration or --days, not both")
    if days is not None:
        duration_s = days * 86400.0
    if duration_s is None:
        duration_s = 30 * 86400.0 if plan_only else 3600.0
    if duration_s <= 0:
        raise click.BadParameter("must be positive", param_hint="--duration")
    now = datetime.now(UTC)
    fleet = build_fleet(seed=seed, n_units=units, prefix=prefix, today=now.astimezone(LOCAL_TZ).date())

    if now_cases is not None and not plan_only:
        raise click.UsageError("--now goes with --plan-only (write the plan, then drive it with --visits)")
    if plan_only:
        if bootstrap or bootstrap_only or visits_file or truth_path:
            raise click.UsageError("--plan-only writes the plan only: it takes no --bootstrap, --visits or --truth")
        out = out or Path("visits.json")
        if now_cases is not None:
            first = now.timestamp() + now_in_s
            try:
                visits = visits_now(fleet, seed=seed, cases=[c.strip() for c in now_cases.split(",") if c.strip()],
                                    start=first, length_s=visit_length_s)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--now") from None
            begin, end = now, datetime.fromtimestamp(max(v.end for v in visits) + 1, UTC)
            duration_s = (end - begin).total_seconds()
        else:
            begin = start or (now - timedelta(seconds=duration_s))
            end = begin + timedelta(seconds=duration_s)
            visits = plan_visits(fleet, seed=seed, start=begin.timestamp(), end=end.timestamp())
        write_plan(out, visits, seed=seed, prefix=prefix, units=units, start=begin.timestamp(), end=end.timestamp())
        counts = ", ".join(f"{c} {sum(v.case == c for v in visits)}" for c in CASES)
        span = f"{duration_s / 86400:g} days" if duration_s >= 86400 else f"the next {duration_s:.0f} s"
        click.echo(f"{len(visits)} visits planned for {units} units over {span} ({counts}); written to {out}")
        click.echo("plan only: no visit was driven over HTTP (drop --plan-only to drive them)")
        return

    _drive_cmd(fleet=fleet, duration_s=duration_s, speedup=speedup, seed=seed, prefix=prefix, units=units,
               start=start, visits_file=visits_file, out=out, api_url=api_url or _default_api_url(),
               accounts_path=accounts_path, bootstrap=bootstrap or bootstrap_only, bootstrap_only=bootstrap_only,
               truth_path=truth_path, quiet=quiet)


def _drive_cmd(*, fleet, duration_s: float, speedup: float, seed: int, prefix: str, units: int,
               start: datetime | None, visits_file: Path | None, out: Path | None, api_url: str,
               accounts_path: Path, bootstrap: bool, bootstrap_only: bool, truth_path: Path | None,
               quiet: bool) -> None:
    import os
    import sys
    from datetime import UTC

    from liftwatch.settings import get_settings
    from simulators.accounts import AccountsFile
    from simulators.accounts import bootstrap as run_bootstrap
    from simulators.clock import plan_window
    from simulators.registration import register
    from simulators.technicians import DriveOptions, drive
    from simulators.visits import plan_visits, read_plan, write_plan

    try:
        file_visits = read_plan(visits_file) if visits_file else None
    except (ValueError, KeyError) as exc:
        raise click.UsageError(f"--visits {visits_file}: {exc}") from None
    try:
        accounts = AccountsFile.load(accounts_path)
    except (ValueError, OSError) as exc:
        raise click.UsageError(f"--accounts {accounts_path}: {exc}") from None
    dsn = get_settings().database_url if "LIFTWATCH_DATABASE_URL" in os.environ or bootstrap else None

    def say(line: str) -> None:
        if not quiet:
            click.echo(line, err=True)

    if bootstrap:
        assert dsn is not None
        unit_ids = [v.unit_id for v in file_visits] if file_visits is not None else [u.unit_id for u in fleet.units]
        try:
            report = run_bootstrap(
                dsn=dsn, api_url=api_url, accounts=accounts, unit_ids=unit_ids, log=say,
                register=None if file_visits is not None else (lambda conn: register(conn, fleet).units))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        for line in report.lines():
            click.echo(line)
        click.echo(f"accounts: {accounts_path} (mode 0600)")
        if report.problems:
            sys.exit(1)
        if bootstrap_only:
            return
    if not accounts.accounts:
        raise click.UsageError(f"no accounts in {accounts_path}: run once with --bootstrap")

    try:
        window = plan_window(now=datetime.now(UTC), duration_s=duration_s, speedup=speedup, start=start)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if file_visits is not None:
        visits = file_visits
    else:
        visits = plan_visits(fleet, seed=seed, start=window.live_start, end=window.end)
    if out is not None:
        write_plan(out, visits, seed=seed, prefix=prefix, units=units, start=window.live_start, end=window.end)
    opts = DriveOptions(
        api_url=api_url, accounts_path=accounts_path, window=window, speedup=speedup, seed=seed, dsn=dsn,
        truth_path=truth_path, progress=not quiet,
        parameters={"seed": seed, "prefix": prefix, "units": units,
                    "visits_file": str(visits_file) if visits_file else None})
    try:
        summary = drive(visits, opts, accounts)
    except ValueError as exc:  # a bad --api-url
        raise click.UsageError(str(exc)) from None
    for line in summary.lines():
        click.echo(line)
    if truth_path:
        click.echo(f"truth written to {truth_path}")
    if summary.interrupted:
        sys.exit(130)
    if summary.failures or summary.aborted:
        sys.exit(1)


@click.command("legacy")
@click.option("--units", type=click.IntRange(1, 1_000_000), default=100, show_default=True,
              help="number of units of the simulated fleet (as `simulate fleet --units`)")
@click.option("--seed", type=int, default=1, show_default=True, help="same seed as the fleet simulator")
@click.option("--prefix", default="SIM", show_default=True, help="same prefix as the fleet simulator")
@click.option("--go-live", "go_live", type=INSTANT, default=None,
              help="the archive ends here (ISO 8601 with offset); default: now")
@click.option("--fraction", type=_FRACTION, default=0.8, show_default=True,
              help="part of the fleet whose archive is imported (the others start from nothing)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="CSV file to write ('-' for stdout)")
def legacy_cmd(units: int, seed: int, prefix: str, go_live: datetime | None, fraction: float, out: Path) -> None:
    """Write a simulated fleet's maintenance archive from before go-live as a CSV for
    `liftwatch maintenance import` (last visit per unit and plan kind, from the same visit plan
    the fleet and technician simulators use; skipped visits leave units overdue on day one)."""
    import sys
    from datetime import UTC

    from simulators.clock import LOCAL_TZ
    from simulators.fleet import build_fleet
    from simulators.legacy import archive_rows, write_csv

    end = go_live or datetime.now(UTC)
    fleet = build_fleet(seed=seed, n_units=units, prefix=prefix, today=datetime.now(UTC).astimezone(LOCAL_TZ).date())
    rows = archive_rows(fleet, seed=seed, go_live=end.timestamp(), fraction=fraction)
    if str(out) == "-":
        write_csv(sys.stdout, rows)
    else:
        with out.open("w", encoding="utf-8", newline="") as fh:
            write_csv(fh, rows)
    n_units = len({r["unit_id"] for r in rows})
    click.echo(f"{len(rows)} archive rows for {n_units} of {units} units (last visits before {end.isoformat()})"
               + ("" if str(out) == "-" else f" written to {out}"), err=str(out) == "-")
