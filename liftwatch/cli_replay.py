"""`liftwatch simulate past-visits`: a simulated fleet's maintenance history, recorded through the
maintenance code at the visits' own times (maintenance/replay.py).

This sits with the CLI, at the top of the import graph, because it joins two subsystems that
never import each other: the simulators' visit plan, readings and accounts, and the
maintenance functions that record them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from liftwatch.settings import get_settings


def past_visit(v: Any, spec: Any) -> Any:
    """A simulator visit (simulators.visits.Visit) as the replay takes it; `spec` is its UnitSpec."""
    from maintenance.replay import PastVisit

    return PastVisit(visit_id=v.visit_id, unit_id=v.unit_id, kind=v.kind, case=v.case,
                     due_on=date.fromisoformat(v.due_on), start=datetime.fromtimestamp(v.start, UTC),
                     end=datetime.fromtimestamp(v.end, UTC), maintenance_company_id=spec.site.maintenance_company_id,
                     user_unit_id=spec.site.user_unit_id, lat=spec.site.lat, lon=spec.site.lon)


def simulated_entry(seed: int) -> Any:
    """What a simulated technician records for an item (simulators/readings.py)."""
    from simulators.readings import entry_for

    def entry(v: Any, item: Any) -> Any:
        m = item.measurement
        return entry_for({"code": item.code, "measurement": None if m is None else
                          {"quantity": m.quantity, "unit": m.unit, "min": m.min, "max": m.max}},
                         seed=seed, unit_id=v.unit_id, visit_id=v.visit_id)
    return entry


@click.command("past-visits")
@click.option("--units", type=click.IntRange(1, 1_000_000), default=100, show_default=True,
              help="number of units of the simulated fleet (as `simulate fleet --units`)")
@click.option("--seed", type=int, default=1, show_default=True, help="same seed as the fleet simulator")
@click.option("--prefix", default="SIM", show_default=True, help="same prefix as the fleet simulator")
@click.option("--days", type=click.FloatRange(min=0.0, min_open=True, max=88.0), required=True,
              help="record the plan's visits of this many days before now (as the fleet's --history-days)")
@click.option("--accounts", "accounts_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path(".demo/sim-accounts.json"), show_default=True,
              help="credentials of `simulate technicians --bootstrap`: the same people sign the history")
@click.option("--quiet", is_flag=True, help="no progress on stderr")
def past_visits_cmd(units: int, seed: int, prefix: str, days: float, accounts_path: Path, quiet: bool) -> None:
    """Record the visits of the seed's plan from the last --days through the maintenance code,
    at their planned times: check-in, every checklist item, the technician's Ed25519 signature
    and, per case, the user unit's countersignature, each in the ledger. Skipped visits do
    nothing (they turn overdue); unverified ones are signed although the fleet simulator kept
    the unit out of inspection mode. Visits still under way now are left out.

    \b
    The API never back-dates a signature, so a history cannot be driven over HTTP; this
    command exists for the demo and refuses to run unless LIFTWATCH_ENV=development. Run
    `simulate fleet --history-days` with the same --units/--seed/--prefix first (the telemetry
    that confirms the visits) and `simulate technicians --bootstrap-only` (the accounts).
    """
    import time

    from psycopg.rows import dict_row

    from liftwatch import db as dbmod
    from maintenance.deps import User
    from maintenance.replay import PastVisitRecorder, Signer
    from simulators.accounts import AccountsFile, manager_username, technician_username
    from simulators.clock import LOCAL_TZ
    from simulators.fleet import build_fleet
    from simulators.visits import plan_visits

    settings = get_settings()
    if settings.env != "development":
        raise click.ClickException("past-visits writes back-dated signatures, which only a simulation may do: "
                                   f"refused with LIFTWATCH_ENV={settings.env}")
    try:
        accounts = AccountsFile.load(accounts_path)
    except (ValueError, OSError) as exc:
        raise click.UsageError(f"--accounts {accounts_path}: {exc}") from None
    now = datetime.now(UTC)
    fleet = build_fleet(seed=seed, n_units=units, prefix=prefix, today=now.astimezone(LOCAL_TZ).date())
    specs = {u.unit_id: u for u in fleet.units}
    settle = timedelta(minutes=5)  # the countersignature follows a minute after; nothing may be stamped after now
    visits = [v for v in plan_visits(fleet, seed=seed, start=(now - timedelta(days=days)).timestamp(),
                                     end=now.timestamp())
              if datetime.fromtimestamp(v.end, UTC) + settle < now]
    with dbmod.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        people = {r["username"]: r for r in conn.execute(
            "SELECT us.user_id, us.username, p.person_id, p.name, p.role, p.company_id FROM users us "
            "JOIN people p USING (person_id) WHERE us.active")}
        signers: dict[str, Signer] = {}

        def signer(role: str, company_id: str) -> Signer:
            username = technician_username(company_id) if role == "technician" else manager_username(company_id)
            if username not in signers:
                a, p = accounts.get(username), people.get(username)
                if a is None or p is None or a.key_id is None:
                    raise click.ClickException(f"no enrolled account {username} (run `liftwatch simulate technicians "
                                               f"--bootstrap-only --accounts {accounts_path}` with the same fleet)")
                signers[username] = Signer(User(p["user_id"], p["person_id"], username, p["name"], p["role"],
                                                p["company_id"]), a.key(), a.key_id, a.password)
            return signers[username]

        recorder = PastVisitRecorder(conn, [past_visit(v, specs[v.unit_id]) for v in visits], signer=signer,
                                     entry=simulated_entry(seed))
        t0, total = time.monotonic(), recorder.pending
        day = now - timedelta(days=days)
        while recorder.pending:
            day += timedelta(days=1)
            recorder.advance(min(day, now))
            if not quiet:
                click.echo(f"\r  recorded {total - recorder.pending}/{total} steps "
                           f"({time.monotonic() - t0:.0f} s)", nl=False, err=True)
            if day >= now:
                break
        if not quiet:
            click.echo(err=True)
    c = recorder.counts
    click.echo(f"{len(visits)} past visits: {c.signed} signed ({c.items} items, {c.defects} defects), "
               f"{c.countersigned} countersigned, {c.skipped} skipped (left to turn overdue), "
               f"{c.checked_in - c.signed} checked in but not signed; {time.monotonic() - t0:.1f} s")
