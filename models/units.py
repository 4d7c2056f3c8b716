"""Time units shared by features, simulation and evaluation."""

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
