"""The one way fraudstream connects to Redis: a single primary or a Redis Cluster, over TLS
with an ACL user when the settings say so (`redis.*` in docs/configuration.md).

Every service and tool gets its client here, so TLS files, credentials and timeouts are
read in one place; the password travels in the client only, never in a URL or a log line.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import RedisCluster

from stream.config import RedisSettings

Client = redis.Redis | RedisCluster


def redis_options(settings: RedisSettings) -> dict[str, Any]:
    """Keyword arguments for redis-py's from_url, credentials and TLS included."""
    options: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.socket_timeout_s,
        "retry_on_timeout": False,
        "health_check_interval": 10,
    }
    if settings.username is not None:
        options["username"] = settings.username
    if settings.password is not None:
        options["password"] = settings.password.get_secret_value()
    if settings.url.startswith("rediss://"):
        options["ssl_cert_reqs"] = "required"
        options["ssl_check_hostname"] = settings.tls_check_hostname
        if settings.tls_ca is not None:
            options["ssl_ca_certs"] = str(settings.tls_ca)
        if settings.tls_certificate is not None and settings.tls_key is not None:
            options["ssl_certfile"] = str(settings.tls_certificate)
            options["ssl_keyfile"] = str(settings.tls_key)
    return options


def redis_client(settings: RedisSettings) -> Client:
    """A client for the feature store's Redis; nothing is sent until the first call."""
    options = redis_options(settings)
    if settings.cluster:
        # A failover moves slots to a promoted replica: the client re-reads the slot map
        # and retries the call on the new owner (its default: 3 attempts).
        return RedisCluster.from_url(settings.url, **options)
    return redis.Redis.from_url(settings.url, **options)
