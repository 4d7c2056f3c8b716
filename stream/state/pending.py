"""A script call answered later: the feature store sends a batch's state write on a single
primary and reads Redis's reply only once the scorer has used the features (XGBoost, the
outputs encoded), so Redis applies the write while stage 1 works on (`stream.state.featurestore`)."""

from __future__ import annotations

from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from stream.errors import FeatureStoreError


class PendingScript:
    """A script call on a single primary, sent on a connection of its own and answered later:
    the caller works on while Redis runs it, then `wait()`s for the reply (exactly once).

    A Redis that lost the script (a restart) gets it again and the call is sent once more;
    any other failure, sending or waiting, is a FeatureStoreError naming `failure`. The
    connection goes back to the pool after the reply, or is dropped when it failed.
    """

    def __init__(self, client: redis.Redis, script: Script, keys: list[str], args: list[Any], failure: str) -> None:
        self.client, self.script, self.failure = client, script, failure
        self.command = (len(keys), *keys, *args)
        self.conn: Any = None
        try:
            self.conn = client.connection_pool.get_connection()
            self.conn.send_command("EVALSHA", script.sha, *self.command)
        except (redis.RedisError, OSError) as exc:
            self._release(failed=True)
            raise FeatureStoreError(f"{failure}: {exc}") from exc

    def wait(self) -> None:
        """The call's reply; FeatureStoreError when it failed."""
        if self.conn is None:
            return
        answered = False
        try:
            try:
                self.conn.read_response()
            except NoScriptError:
                self.script.sha = self.client.script_load(self.script.script)
                self.conn.send_command("EVALSHA", self.script.sha, *self.command)
                self.conn.read_response()
            answered = True
        except (redis.RedisError, OSError) as exc:
            raise FeatureStoreError(f"{self.failure}: {exc}") from exc
        finally:
            self._release(failed=not answered)

    def _release(self, failed: bool) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if failed:  # a reply may still be on its way: never hand this socket to another call
            conn.disconnect()
        self.client.connection_pool.release(conn)
