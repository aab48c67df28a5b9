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
              help="visit plan from `simulate technicians --out` (default: the seed's own plan, which "
                   "is the same one)")
@click.option("--start", type=INSTANT, default=None,
              help="simulated start of the live part (ISO 8601 with offset); default: so the run ends now "
                   "on the wall clock. The whole window must end by the time the run does")
@click.option("--prefix", default="SIM", show_default=True,
              help="prefix of unit, site and company ids (keeps several simulated fleets apart)")
@click.option("--fault-scale", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="multiplies the healthy random fault rates (0 = only degradation-driven faults)")
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
              no_register: bool, dry_run: bool, workers: int, client_id: str | None, quiet: bool) -> None:
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
        truth_path=truth_path, register=not no_register, dry_run=dry_run, client_id=client_id, progress=not quiet,
        workers=workers)
    try:
        summary = run_fleet(opts, get_settings())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    for line in summary.lines():
        click.echo(line)
    if truth_path:
        click.echo(f"truth written to {truth_path}")


@click.command("technicians")
@click.option("--days", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="length of the plan's window")
@click.option("--units", type=click.IntRange(1, 1_000_000), default=100, show_default=True,
              help="number of units (the same fleet as `simulate fleet --units` with the same seed and prefix)")
@click.option("--seed", type=int, default=1, show_default=True, help="same seed as the fleet simulator")
@click.option("--prefix", default="SIM", show_default=True, help="same prefix as the fleet simulator")
@click.option("--start", type=INSTANT, default=None,
              help="start of the window (ISO 8601 with offset); default: DAYS before now, which matches "
                   "`simulate fleet --history-days DAYS`")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default="visits.json",
              show_default=True, help="where to write the plan (JSON)")
def technicians_cmd(days: float, units: int, seed: int, prefix: str, start: datetime | None, out: Path) -> None:
    """Plan the technicians' maintenance visits and write the plan as JSON.

    NOTE: until the maintenance API (issue #5) lands, this command only WRITES THE PLAN; it
    drives no visit over HTTP (no check-in, checklist or signatures yet). Each visit has a
    unit, due date, kind (half_monthly, quarterly, semi_annual, annual), time on site,
    technician, and a case: genuine, skipped (the unit becomes overdue), unverified (signed
    without inspection mode on site) or missing_countersign. `simulate fleet --visits FILE`
    puts units into inspection mode for the genuine and missing_countersign visits (without
    --visits it uses the very same plan, derived from the seed).
    """
    from datetime import UTC, timedelta

    from simulators.clock import LOCAL_TZ
    from simulators.fleet import build_fleet
    from simulators.visits import CASES, plan_visits, write_plan

    now = datetime.now(UTC)
    begin = start or (now - timedelta(days=days))
    end = begin + timedelta(days=days)
    fleet = build_fleet(seed=seed, n_units=units, prefix=prefix, today=now.astimezone(LOCAL_TZ).date())
    visits = plan_visits(fleet, seed=seed, start=begin.timestamp(), end=end.timestamp())
    write_plan(out, visits, seed=seed, prefix=prefix, units=units, start=begin.timestamp(), end=end.timestamp())
    counts = ", ".join(f"{c} {sum(v.case == c for v in visits)}" for c in CASES)
    click.echo(f"{len(visits)} visits planned for {units} units over {days:g} days ({counts}); written to {out}")
    click.echo("plan only: the maintenance API (issue #5) does not exist yet, so no visit was driven over HTTP")
