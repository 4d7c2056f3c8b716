"""The one exception tree of fraudstream.

    FraudstreamError
    ├── PoisonError            never retried: the record goes to the DLQ
    │   ├── DecodeError        framing or Avro body unreadable
    │   ├── ValidationError    decoded, but breaks the contract (missing id, absurd amount, ...)
    │   └── DuplicateTransaction  its transaction id was already decided from another record
    ├── TransientError         pause, back off, retry: the record is not lost
    │   ├── FeatureStoreError  Redis unreachable or timing out
    │   └── BrokerError        Kafka unreachable, fenced or timing out
    │       └── ClientResetError  the transaction's outcome or the producer's state is unknown:
    │                             the stage rebuilds its clients and resumes from committed offsets
    ├── RewindError            a batch to redo could not be rewound: the stage stops rather than skip it
    ├── OffsetsError           a partition's position cannot be trusted (committed offset lost,
    │                          or out of range): the stage stops rather than reprocess or skip
    ├── ConfigError            bad settings: fail at start, naming the key
    ├── ReproductionError      an audit tool recomputed a published score and got another one
    ├── ArtifactError          a model version that is missing, corrupt or mismatched
    └── DataError              training / evaluation input that cannot be used

The root, ArtifactError and DataError live in `models/errors.py` (pure compute
shares them); everything that touches Kafka or Redis is defined here.

Poison errors carry the raw bytes they were raised for, as confluent-kafka's
ConsumeError carries its message, so the DLQ writer never has to look them up.
"""

from __future__ import annotations

from models.errors import ArtifactError, DataError, FraudstreamError

__all__ = [
    "ArtifactError",
    "BrokerError",
    "ClientResetError",
    "ConfigError",
    "DataError",
    "DecodeError",
    "DuplicateTransaction",
    "FeatureStoreError",
    "FraudstreamError",
    "OffsetsError",
    "PoisonError",
    "ReproductionError",
    "RewindError",
    "TransientError",
    "ValidationError",
]


class PoisonError(FraudstreamError):
    """A record that can never be processed; it belongs in the DLQ."""

    def __init__(self, reason: str, raw: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


class DecodeError(PoisonError):
    """The bytes are not a readable record of the expected schema."""


class ValidationError(PoisonError):
    """The record decoded but violates the contract."""


class DuplicateTransaction(PoisonError):
    """The transaction id was already decided from another record (a resend, or the same id
    under another customer): a second decision would break "exactly one per transaction"."""


class TransientError(FraudstreamError):
    """A dependency is briefly unavailable; retrying later may succeed."""


class FeatureStoreError(TransientError):
    """Redis could not serve a feature read or update."""


class BrokerError(TransientError):
    """Kafka could not serve a produce, commit or transaction call."""


class ClientResetError(BrokerError):
    """The producer is fenced or fatally failed, or a commit could neither be resumed nor
    aborted: whether the batch committed is unknown. The stage drops the batch, rebuilds its
    producer (whose init fences the old one and settles its transaction) and consumer, and
    resumes from the committed offsets — so the batch is redone exactly when it did not commit."""


class OffsetsError(FraudstreamError):
    """A partition has no usable committed offset although the group committed on it before
    (its progress mark says so), or its offset is out of range. Not transient: the stage stops
    rather than reprocess from the beginning or skip; the message says how to set the offset."""


class RewindError(FraudstreamError):
    """The consumer could not be moved back to a batch that has to be processed again while
    it still owns the partition; carrying on would commit offsets past that batch. Not
    transient: the stage stops, and its restart resumes from the committed offsets."""


class ConfigError(FraudstreamError):
    """Invalid settings; the message names the offending key."""


class ReproductionError(FraudstreamError):
    """An audit (explain, backtest) recomputed what was published and got something else:
    its explanation would be of a state the decision never saw."""
