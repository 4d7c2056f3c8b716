"""A card-transaction simulator with tagged fraud scenarios and late labels.

Customers (cards) have a home location, a spending profile and one to three
devices; terminals have a location, an MCC and a channel. Each customer makes a
Poisson number of transactions a day with a daily rhythm, at terminals near home.
Fraud scenarios, each tagged in the `scenario` column:

- ``large_amount``: a payment several times the customer's usual amount;
- ``compromised_terminal``: every payment at a skimmed terminal for some weeks;
- ``compromised_card``: a share of a stolen card's later payments, inflated;
- ``account_takeover``: new device, far from home, large amount;
- ``card_testing``: a burst of tiny online payments within minutes;
- ``probe_then_spend``, ``takeover_burst``, ``slow_drift``: sequences (`models.scenarios`).

Labels (fraud reports) arrive with a realistic delay. Same config and seed, same data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from models.scenarios import sequence_frauds
from models.units import DAY_MS, HOUR_MS

MINUTE_MS = 60_000
CHANNELS = ("POS", "ECOM", "ATM", "MOTO", "CONTACTLESS")
MCCS = np.array([5411, 5812, 5541, 5311, 5999, 5732, 4111, 7011, 5912, 6011], dtype=np.int32)
# Terminal mix per channel: most physical, a fifth online.
TERMINAL_CHANNEL_P = np.array([0.45, 0.2, 0.05, 0.05, 0.25])

TX_COLUMNS = [
    "transaction_id", "event_time", "customer_id", "terminal_id", "amount", "currency", "channel",
    "mcc", "device_id", "ip", "latitude", "longitude", "country",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Size and fraud mix of a simulated history."""

    n_customers: int = 3000
    n_terminals: int = 800
    days: int = 60
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    seed: int = 0
    radius_km: float = 40.0
    # Fraud mix, tuned for an overall fraud rate near 0.7 %.
    large_amount_rate: float = 0.0007  # share of all transactions
    terminals_compromised_per_day: float = 0.12
    terminal_compromise_days: int = 14
    cards_compromised_per_day: float = 2.0
    card_compromise_days: int = 14
    ato_per_day: float = 3.0
    card_testing_per_day: float = 1.5
    sequence_per_day: tuple[float, float, float] = (1.0, 1.0, 0.25)  # models.scenarios.SCENARIOS
    label_delay_mean_days: float = 5.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Simulation:
    """Transactions (time-ordered, with `is_fraud` and `scenario`) and fraud labels."""

    transactions: pd.DataFrame
    labels: pd.DataFrame


def _km_to_deg(km: float) -> float:
    return km / 111.0


def simulate(cfg: SimConfig) -> Simulation:
    """Generate a reproducible history: same config, same data."""
    rng = np.random.default_rng(cfg.seed)
    # A region about 800 x 800 km.
    lat0, lon0 = 44.0, 0.0
    c_lat = lat0 + rng.uniform(0, 7, cfg.n_customers)
    c_lon = lon0 + rng.uniform(0, 10, cfg.n_customers)
    c_mean = rng.lognormal(np.log(40.0), 0.6, cfg.n_customers)  # major units
    c_rate = rng.uniform(0.5, 4.0, cfg.n_customers)
    c_ndev = rng.integers(1, 4, cfg.n_customers)
    t_lat = lat0 + rng.uniform(0, 7, cfg.n_terminals)
    t_lon = lon0 + rng.uniform(0, 10, cfg.n_terminals)
    t_chan = rng.choice(len(CHANNELS), cfg.n_terminals, p=TERMINAL_CHANNEL_P)
    t_mcc = rng.choice(MCCS, cfg.n_terminals)
    online = np.nonzero(t_chan == 1)[0]

    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("cust", "term", "t", "amount", "dev")}
    radius = _km_to_deg(cfg.radius_km)
    for c in range(cfg.n_customers):
        near = np.nonzero((np.abs(t_lat - c_lat[c]) < radius) & (np.abs(t_lon - c_lon[c]) < radius * 1.4))[0]
        if near.size < 3:
            near = np.argsort((t_lat - c_lat[c]) ** 2 + (t_lon - c_lon[c]) ** 2)[:5]
        usual = np.union1d(near, rng.choice(online, min(3, online.size), replace=False))
        counts = rng.poisson(c_rate[c], cfg.days)
        n = int(counts.sum())
        if n == 0:
            continue
        day = np.repeat(np.arange(cfg.days), counts)
        hour = rng.normal(13.5, 4.5, n) % 24.0
        rows["cust"].append(np.full(n, c))
        rows["term"].append(rng.choice(usual, n))
        rows["t"].append(cfg.start_ms + day * DAY_MS + (hour * HOUR_MS).astype(np.int64))
        rows["amount"].append(np.maximum(rng.normal(c_mean[c], c_mean[c] / 2, n), 0.5))
        rows["dev"].append(rng.integers(0, c_ndev[c], n))

    cust = np.concatenate(rows["cust"])
    term = np.concatenate(rows["term"])
    t = np.concatenate(rows["t"])
    amount = np.concatenate(rows["amount"])
    dev = np.concatenate(rows["dev"]).astype(np.int64)
    scenario = np.full(cust.size, "", dtype=object)
    far = np.zeros(cust.size, dtype=bool)

    # Compromised terminals: every payment there for a few weeks is fraudulent.
    n_term_events = rng.poisson(cfg.terminals_compromised_per_day * cfg.days)
    for _ in range(n_term_events):
        k = rng.integers(cfg.n_terminals)
        start = cfg.start_ms + rng.integers(cfg.days) * DAY_MS
        hit = (term == k) & (t >= start) & (t < start + cfg.terminal_compromise_days * DAY_MS)
        scenario[hit & (scenario == "")] = "compromised_terminal"

    # Compromised cards: a third of the later payments, amounts inflated.
    for _ in range(rng.poisson(cfg.cards_compromised_per_day * cfg.days)):
        k = rng.integers(cfg.n_customers)
        start = cfg.start_ms + rng.integers(cfg.days) * DAY_MS
        hit = np.nonzero((cust == k) & (t >= start) & (t < start + cfg.card_compromise_days * DAY_MS))[0]
        hit = hit[rng.random(hit.size) < 1 / 3]
        hit = hit[scenario[hit] == ""]
        scenario[hit] = "compromised_card"
        amount[hit] *= rng.uniform(2.0, 5.0, hit.size)

    # Large amounts on random payments.
    big = np.nonzero((rng.random(cust.size) < cfg.large_amount_rate) & (scenario == ""))[0]
    scenario[big] = "large_amount"
    amount[big] = c_mean[cust[big]] * rng.uniform(6.0, 15.0, big.size)

    extra: dict[str, list[np.ndarray]] = {k: [] for k in ("cust", "term", "t", "amount", "dev", "scenario", "far")}

    def add(cs: np.ndarray, ts: np.ndarray, ams: np.ndarray, tms: np.ndarray, devs: np.ndarray, tag: str) -> None:
        extra["cust"].append(cs)
        extra["t"].append(ts)
        extra["amount"].append(ams)
        extra["term"].append(tms)
        extra["dev"].append(devs)
        extra["scenario"].append(np.full(cs.size, tag, dtype=object))
        extra["far"].append(np.ones(cs.size, dtype=bool))

    # Account takeover: a new device, a terminal far from home, a large amount.
    for _ in range(rng.poisson(cfg.ato_per_day * cfg.days)):
        k = rng.integers(cfg.n_customers)
        d2 = (t_lat - c_lat[k]) ** 2 + (t_lon - c_lon[k]) ** 2
        farthest = np.argsort(d2)[-50:]
        m = int(rng.integers(1, 4))
        ts = cfg.start_ms + rng.integers(cfg.days * DAY_MS) + np.arange(m) * rng.integers(5, 120) * MINUTE_MS
        add(np.full(m, k), ts, c_mean[k] * rng.uniform(4.0, 12.0, m), np.full(m, rng.choice(farthest)),
            np.full(m, 100 + int(rng.integers(1000))), "account_takeover")  # fmt: skip

    # Card testing: a burst of tiny online payments within minutes.
    for _ in range(rng.poisson(cfg.card_testing_per_day * cfg.days)):
        k = rng.integers(cfg.n_customers)
        m = int(rng.integers(5, 12))
        t0 = cfg.start_ms + rng.integers(cfg.days * DAY_MS)
        ts = t0 + np.sort(rng.integers(0, 10 * MINUTE_MS, m))
        add(np.full(m, k), ts, rng.uniform(0.5, 2.5, m), rng.choice(online, m),
            np.full(m, 100 + int(rng.integers(1000))), "card_testing")  # fmt: skip
    for episode in sequence_frauds(cfg.seed, cfg.days, cfg.start_ms, c_mean, c_ndev, online, cfg.sequence_per_day):
        add(*episode)
    if extra["cust"]:
        cust = np.concatenate([cust, *extra["cust"]])
        term = np.concatenate([term, *extra["term"]])
        t = np.concatenate([t, *extra["t"]])
        amount = np.concatenate([amount, *extra["amount"]])
        dev = np.concatenate([dev, *extra["dev"]])
        scenario = np.concatenate([scenario, *extra["scenario"]])
        far = np.concatenate([far, *extra["far"]])

    return _assemble(cfg, rng, cust, term, t, amount, dev, scenario, far, t_lat, t_lon, t_chan, t_mcc)


def _assemble(
    cfg: SimConfig,
    rng: np.random.Generator,
    cust: np.ndarray,
    term: np.ndarray,
    t: np.ndarray,
    amount: np.ndarray,
    dev: np.ndarray,
    scenario: np.ndarray,
    far: np.ndarray,
    t_lat: np.ndarray,
    t_lon: np.ndarray,
    t_chan: np.ndarray,
    t_mcc: np.ndarray,
) -> Simulation:
    order = np.lexsort((cust, t))
    cust, term, t, amount, dev, scenario, far = (a[order] for a in (cust, term, t, amount, dev, scenario, far))
    n = cust.size
    chan = t_chan[term].copy()
    # Physical terminals: a share of card-present payments are contactless.
    chan[(chan == 0) & (rng.random(n) < 0.3)] = 4
    is_online = chan == 1
    lat = np.where(is_online, np.nan, t_lat[term])
    lon = np.where(is_online, np.nan, t_lon[term])
    # Devices are seen for online and contactless (wallet) payments.
    has_dev = is_online | (chan == 4) | far
    device = np.full(n, None, dtype=object)
    names = np.char.add(np.char.add("d-", cust.astype(str)), np.char.add("-", dev.astype(str)))
    device[has_dev] = names[has_dev]
    ip = np.full(n, None, dtype=object)
    ip[is_online] = np.char.add("10.0.", (cust % 250).astype(str))[is_online]
    is_fraud = scenario != ""
    tx = pd.DataFrame(
        {
            "transaction_id": [f"s{cfg.seed}-{i:09d}" for i in range(n)],
            "event_time": t.astype(np.int64),
            "customer_id": np.char.add("c-", np.char.zfill(cust.astype(str), 6)),
            "terminal_id": np.char.add("m-", np.char.zfill(term.astype(str), 6)),
            "amount": np.maximum(np.round(amount * 100), 1).astype(np.int64),
            "currency": "EUR",
            "channel": np.array(CHANNELS)[chan],
            "mcc": t_mcc[term].astype(np.int32),
            "device_id": device,
            "ip": ip,
            "latitude": lat,
            "longitude": lon,
            "country": "FR",
            "is_fraud": is_fraud,
            "scenario": scenario.astype(str),
        }
    )
    frauds = tx[is_fraud]
    delay = np.clip(rng.exponential(cfg.label_delay_mean_days, len(frauds)), 0.1, 45.0)
    labels = pd.DataFrame(
        {
            "transaction_id": frauds["transaction_id"].to_numpy(),
            "customer_id": frauds["customer_id"].to_numpy(),
            "terminal_id": frauds["terminal_id"].to_numpy(),
            "is_fraud": True,
            "label_time": frauds["event_time"].to_numpy() + (delay * DAY_MS).astype(np.int64),
            "event_time": frauds["event_time"].to_numpy(),
            "source": "chargeback",
        }
    ).sort_values("label_time", kind="stable", ignore_index=True)
    return Simulation(tx, labels)
