"""The root of fraudstream's exception tree, and the errors of pure compute.

The whole tree is drawn in `stream/errors.py`; it lives here so that `models/`,
which imports nothing of `stream/`, shares the same root.
"""

from __future__ import annotations


class FraudstreamError(Exception):
    """Root of every error fraudstream raises on purpose."""


class ArtifactError(FraudstreamError):
    """A model artifact is missing, corrupt or does not match its manifest."""


class DataError(FraudstreamError):
    """Input data for training or evaluation is unusable; the message says why."""
