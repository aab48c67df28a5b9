"""The simulated fleet: sites in one city, their companies and units, each with its character.

Built from the seed alone, site by site, so unit SIM-00007 is the same building, kind and
temperament in a 50-unit and a 10,000-unit run; only which units degrade depends on the
fleet size (exactly round(N x faulty) units, mechanisms dealt round-robin so a small fleet
still shows every mechanism).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Final

from simulators import seeds
from simulators.degradation import FOR_KIND, Mechanism

CITY: Final = "Shanghai"
# district, centre lat, centre lon (all inside lat 31.0-31.4, lon 121.2-121.7)
DISTRICTS: Final = (
    ("Huangpu", 31.23, 121.48), ("Xuhui", 31.18, 121.44), ("Changning", 31.21, 121.41),
    ("Jing'an", 31.24, 121.45), ("Putuo", 31.25, 121.40), ("Hongkou", 31.27, 121.49),
    ("Yangpu", 31.27, 121.53), ("Pudong", 31.22, 121.55), ("Minhang", 31.11, 121.38),
    ("Baoshan", 31.36, 121.45), ("Jiading", 31.35, 121.27), ("Songjiang", 31.04, 121.23),
)
ROADS: Final = ("Nanjing", "Huaihai", "Century", "Zhangyang", "Siping", "Caoxi", "Hongqiao", "Gonghe",
                "Yan'an", "Zhongshan", "Dalian", "Pudian", "Longwu", "Jiangchang", "Tianshan", "Wuning")
BRANDS: Final = ("Huaxia", "Pujiang", "Shenlong", "Dongfang", "Jinqiao", "Haitong", "Xinda", "Anjie",
                 "Hengtong", "Zhongyuan", "Baoli", "Ruifeng")
LIFT_MODELS: Final = ("Mitsubishi NexWay", "Otis Gen2", "KONE MonoSpace", "Schindler 5500", "Hitachi HGP",
                      "TK Evolution", "Canny KLK2", "Fujitec XIOR", "SJEC SJ-T")
ESCALATOR_MODELS: Final = ("Otis 513NPE", "Schindler 9300", "KONE TravelMaster", "Hitachi VX", "SJEC ES-30")
_SITE_WORD: Final = {"office": "Tower", "residential": "Residence", "commercial": "Plaza"}
_UNITS_PER_SITE: Final = {"office": (2, 6), "residential": (1, 4), "commercial": (2, 8)}


@dataclass(frozen=True, slots=True)
class Company:
    company_id: str
    name: str
    kind: str  # 'maintenance' | 'user_unit'


@dataclass(frozen=True, slots=True)
class Site:
    site_id: str
    name: str
    address: str
    district: str
    lat: float
    lon: float
    pattern: str
    maintenance_company_id: str
    user_unit_id: str


@dataclass(frozen=True, slots=True)
class UnitSpec:
    index: int
    unit_id: str
    kind: str
    site: Site
    floors: int
    rated_speed_mps: float
    rated_load_kg: int | None
    model: str
    installed_on: date
    registration_code: str | None
    last_inspection_on: date
    next_inspection_due: date
    busy: float  # multiplier on the site's traffic profile
    door_close_ms: float  # this unit's healthy door close time
    vibration_mg: float  # this unit's healthy ride vibration
    leveling_bias_mm: float
    ambient_offset_c: float
    mechanism: Mechanism | None = None
    onset_frac: float = 0.0  # where in the simulated span the degradation starts


@dataclass(frozen=True)
class Fleet:
    prefix: str
    units: tuple[UnitSpec, ...]
    sites: tuple[Site, ...]
    companies: tuple[Company, ...]


def unit_id(prefix: str, index: int) -> str:
    return f"{prefix}-{index + 1:05d}"


def _companies(prefix: str, n_units: int, r: random.Random) -> tuple[list[Company], list[Company]]:
    n_maint = min(30, max(3, n_units // 150))
    n_user = min(400, max(3, n_units // 15))
    maint = [Company(f"{prefix}-MC{i + 1:02d}", f"{BRANDS[i % len(BRANDS)]} Elevator Service Co., Ltd."
                     + (f" ({i // len(BRANDS) + 1})" if i >= len(BRANDS) else ""), "maintenance")
             for i in range(n_maint)]
    user = [Company(f"{prefix}-UU{i + 1:03d}",
                    f"{DISTRICTS[i % len(DISTRICTS)][0]} {r.choice(('Property', 'Estate', 'Facilities'))} "
                    f"Management No. {i + 1}", "user_unit")
            for i in range(n_user)]
    return maint, user


def _unit(prefix: str, index: int, site: Site, kind: str, seed: int, today: date) -> UnitSpec:
    r = seeds.rng(seed, "unit-spec", index)
    if kind in ("escalator", "moving_walk"):
        floors, speed, load, model = 2, 0.5, None, r.choice(ESCALATOR_MODELS)
    elif kind == "dumbwaiter":
        floors, speed, load, model = r.randint(2, 6), 0.4, r.choice((100, 200, 300)), "Dumbwaiter " + r.choice(("DW-100", "DW-300"))
    elif kind == "hydraulic":
        floors, speed, load, model = r.randint(2, 6), r.choice((0.5, 0.63)), r.choice((630, 800, 1000)), "Hydraulic " + r.choice(("GMV", "Blain"))
    else:
        lo, hi = {"office": (10, 45), "residential": (6, 33), "commercial": (3, 8)}[site.pattern]
        floors = r.randint(lo, hi)
        speed = 1.0 if floors <= 8 else 1.75 if floors <= 16 else 2.5 if floors <= 30 else r.choice((3.0, 4.0))
        load = r.choice((800, 1000, 1050, 1350, 1600))
        model = r.choice(LIFT_MODELS)
    installed = today - timedelta(days=int(r.uniform(1, 27) * 365))
    last_insp = today - timedelta(days=r.randint(5, 385))  # ~5 % past the one-year certificate
    return UnitSpec(
        index=index, unit_id=unit_id(prefix, index), kind=kind, site=site, floors=floors,
        rated_speed_mps=speed, rated_load_kg=load, model=model, installed_on=installed,
        registration_code=None if r.random() < 0.02 else f"沪梯{prefix}{index + 1:06d}",
        last_inspection_on=last_insp, next_inspection_due=last_insp + timedelta(days=365),
        busy=r.lognormvariate(0.0, 0.25) * (0.8 + min(floors, 40) / 100),
        door_close_ms=r.uniform(2900.0, 3300.0), vibration_mg=r.uniform(7.0, 12.0),
        leveling_bias_mm=r.gauss(0.0, 0.5), ambient_offset_c=r.gauss(0.0, 2.0),
    )


def build_fleet(*, seed: int, n_units: int, prefix: str = "SIM", faulty: float = 0.0,
                today: date) -> Fleet:
    """Sites, companies and units; `today` anchors install and inspection dates."""
    if not 0.0 <= faulty <= 1.0:
        raise ValueError("faulty must be a fraction between 0 and 1")
    r = seeds.rng(seed, "sites")
    maint, user = _companies(prefix, n_units, seeds.rng(seed, "companies"))
    units: list[UnitSpec] = []
    sites: list[Site] = []
    while len(units) < n_units:
        k = len(sites)
        pattern = r.choices(("office", "residential", "commercial"), weights=(0.35, 0.45, 0.2))[0]
        district, lat, lon = r.choice(DISTRICTS)
        lo, hi = _UNITS_PER_SITE[pattern]
        pick = seeds.rng(seed, "site-companies", k)  # own stream: the company count depends on N
        site = Site(
            site_id=f"{prefix}-S{k + 1:05d}",
            name=f"{district} {r.choice(BRANDS)} {_SITE_WORD[pattern]} {k + 1}",
            address=f"{r.randint(1, 2999)} {r.choice(ROADS)} Road",
            district=district,
            lat=round(min(31.4, max(31.0, lat + r.uniform(-0.03, 0.03))), 6),
            lon=round(min(121.7, max(121.2, lon + r.uniform(-0.03, 0.03))), 6),
            pattern=pattern,
            maintenance_company_id=maint[pick.randrange(len(maint))].company_id,
            user_unit_id=user[pick.randrange(len(user))].company_id,
        )
        sites.append(site)
        for _ in range(min(r.randint(lo, hi), n_units - len(units))):
            if pattern == "commercial":
                kind = r.choices(("traction", "escalator", "moving_walk", "dumbwaiter"), weights=(0.47, 0.42, 0.05, 0.06))[0]
            elif pattern == "residential":
                kind = "hydraulic" if r.random() < 0.08 else "traction"
            else:
                kind = "traction"
            units.append(_unit(prefix, len(units), site, kind, seed, today))
    units = _assign_degradations(units, seed, faulty)
    used = {s.maintenance_company_id for s in sites} | {s.user_unit_id for s in sites}
    return Fleet(prefix, tuple(units), tuple(sites), tuple(c for c in maint + user if c.company_id in used))


def _assign_degradations(units: list[UnitSpec], seed: int, faulty: float) -> list[UnitSpec]:
    """Exactly round(N x faulty) units degrade; mechanisms dealt round-robin (kind permitting)."""
    n_faulty = round(len(units) * faulty)
    order = sorted(range(len(units)), key=lambda i: seeds.derive(seed, "faulty", i))
    mechanisms = list(Mechanism)
    out = list(units)
    for k, i in enumerate(order[:n_faulty]):
        u = units[i]
        allowed = FOR_KIND[u.kind]
        mech = mechanisms[k % len(mechanisms)]
        if mech not in allowed:
            mech = allowed[k % len(allowed)]
        r = seeds.rng(seed, "onset", i)
        out[i] = replace(u, mechanism=mech, onset_frac=r.uniform(0.15, 0.55))
    return out
