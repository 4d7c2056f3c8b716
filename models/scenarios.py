"""Fraud scenarios whose signal lies in the order of a card's transactions, not in any one.

Each is drawn from its own random stream (so the simulator's other scenarios are defined
exactly as before) and tagged in the `scenario` column like them:

- ``probe_then_spend``: two to four tiny online payments from a new device within half an
  hour, then one or two ordinary-looking spends (1.5–3× the card's usual amount) from the
  same device within the next hours — the probes checked the card works;
- ``takeover_burst``: a new device appears and, within minutes, three to six payments of the
  card's usual size follow from it at online shops — each alone looks like the customer;
- ``slow_drift``: a compromised card used quietly once or twice a day for one to two weeks
  from one of the customer's own devices, the amounts creeping up from the usual size to
  about four times it — no single payment stands out, the trend does.

Every payment of an episode is fraudulent (the card holder disputes them all).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from models.units import DAY_MS, HOUR_MS

MINUTE_MS = 60_000
SCENARIOS = ("probe_then_spend", "takeover_burst", "slow_drift")
# One episode: customers, times, amounts (major units), terminals, device numbers, tag.
Episode = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]


def sequence_frauds(
    seed: int,
    days: int,
    start_ms: int,
    c_mean: np.ndarray,
    c_ndev: np.ndarray,
    online: np.ndarray,
    rates: tuple[float, float, float],
) -> Iterator[Episode]:
    """The episodes of the three scenarios; `rates` are episodes per day of each."""
    rng = np.random.default_rng([seed, 19])
    n_customers = c_mean.size
    probe_rate, burst_rate, drift_rate = rates
    for _ in range(rng.poisson(probe_rate * days)):
        k = int(rng.integers(n_customers))
        probes, spends = int(rng.integers(2, 5)), int(rng.integers(1, 3))
        t0 = start_ms + int(rng.integers((days - 1) * DAY_MS))
        t_probe = t0 + np.sort(rng.integers(0, 30 * MINUTE_MS, probes))
        t_spend = t_probe[-1] + np.sort(rng.integers(20 * MINUTE_MS, 4 * HOUR_MS, spends))
        amounts = np.concatenate([rng.uniform(0.5, 3.0, probes), c_mean[k] * rng.uniform(1.5, 3.0, spends)])
        m = probes + spends
        device = 100 + int(rng.integers(1000))
        yield (
            np.full(m, k),
            np.concatenate([t_probe, t_spend]),
            amounts,
            rng.choice(online, m),
            np.full(m, device),
            "probe_then_spend",
        )
    for _ in range(rng.poisson(burst_rate * days)):
        k = int(rng.integers(n_customers))
        m = int(rng.integers(3, 7))
        t0 = start_ms + int(rng.integers((days - 1) * DAY_MS))
        ts = t0 + np.cumsum(rng.integers(1 * MINUTE_MS, 10 * MINUTE_MS, m))
        amounts = c_mean[k] * rng.uniform(0.8, 2.0, m)
        device = 100 + int(rng.integers(1000))
        yield np.full(m, k), ts, amounts, rng.choice(online, m), np.full(m, device), "takeover_burst"
    for _ in range(rng.poisson(drift_rate * days)):
        k = int(rng.integers(n_customers))
        span = int(rng.integers(7, 15))
        per_day = rng.integers(1, 3, span)
        m = int(per_day.sum())
        day = np.repeat(np.arange(span), per_day)
        t0 = start_ms + int(rng.integers(max(days - span, 1))) * DAY_MS
        ts = np.sort(t0 + day * DAY_MS + rng.integers(8 * HOUR_MS, 22 * HOUR_MS, m))
        amounts = c_mean[k] * np.geomspace(1.0, 4.0, m) * rng.uniform(0.9, 1.1, m)
        device = int(rng.integers(0, c_ndev[k]))  # one of the customer's own devices
        yield np.full(m, k), ts, amounts, rng.choice(online, m), np.full(m, device), "slow_drift"
