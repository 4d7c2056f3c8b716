"""The feature store's Lua scripts, and how they are sent: each runs atomically inside Redis,
on the keys it is given.

On a single primary one WRITE_BATCH call carries a whole micro-batch (`run`), and the read is
one MULTI/EXEC of CLAIM_BATCH and an MGET (`claim_and_get`); on a Redis Cluster a script may
only touch keys of one hash slot, so the store calls it once per entity key (each key's braces
are its hash tag) — see `stream.state.featurestore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from models.featureset import BUCKET_DTYPE, DAY_BUCKETS, HISTORY_DTYPE, RING_DAYS, RING_RECORDS
from models.units import DAY_MS
from stream.errors import FeatureStoreError
from stream.state.connection import Client

# Shared by both scripts: add ARGV-given count to a ring slot (column 2 = tx, 3 = frauds),
# mirroring models.features.ring_add: a slot holding an older day is reset first, one
# holding a later day means the day is too old to be read again.
_BUMP = f"""
local function bump(key, day, col, count)
  local off = (day % {RING_DAYS}) * 12
  local raw = redis.call('GETRANGE', key, off, off + 11)
  local d, n, f = 0, 0, 0
  if #raw == 12 then d, n, f = struct.unpack('<i4i4i4', raw) end
  if d ~= day then
    if d > day then return end
    n, f = 0, 0
  end
  if col == 2 then n = n + count else f = f + count end
  redis.call('SETRANGE', key, off, struct.pack('<i4i4i4', day, n, f))
end
"""

# Mirrors models.card.append: a card is seq (u8), RING_RECORDS records, DAY_BUCKETS buckets
# of (day i4, n i4, amount i8); a record whose id is in the ring is skipped, the record whose
# slot is taken moves into its day's bucket (reset when it holds an older day, the record
# dropped when it holds a later one). Ids are compared as their 8 bytes (Lua numbers are doubles).
#
# The scorer sends, per card, the record count it read, the new records and the day buckets
# they change as it computed them (`models.card.updated`: 1 byte of bucket index, then its 16
# bytes, each). When Redis still holds that count (or, for a card read as new, no card),
# nothing was appended since the read, where the scorer already left out the ids the ring
# held: the script writes those bytes in place — the records into their slots, the buckets,
# the count. Otherwise (another writer came between) it applies the records itself, checking
# every id against the ring. A write moves the new bytes only, never the whole card.
_CARD = f"""
local REC, R, B, BUCKET, DAY = {HISTORY_DTYPE.itemsize}, {RING_RECORDS}, {DAY_BUCKETS}, {BUCKET_DTYPE.itemsize}, {DAY_MS}
local RING0 = 8
local DAYS0 = RING0 + R * REC
local SIZE = DAYS0 + B * BUCKET
local function card_append(key, expected, recs, changed, ttl)
  local head = redis.call('GETRANGE', key, 0, 7)
  local seq = -1
  if #head == 8 then
    local lo, hi = struct.unpack('<I4I4', head)
    seq = lo + hi * 4294967296
  elseif #head == 0 then
    seq = 0
  end
  if seq == expected and (expected > 0 or #head == 0) then
    if #head == 0 then redis.call('SET', key, string.rep(string.char(0), SIZE)) end
    local k = #recs / REC
    for r = 0, k - 1 do
      redis.call('SETRANGE', key, RING0 + ((seq + r) % R) * REC, string.sub(recs, r * REC + 1, (r + 1) * REC))
    end
    for e = 0, #changed / (BUCKET + 1) - 1 do
      local at = e * (BUCKET + 1)
      redis.call('SETRANGE', key, DAYS0 + string.byte(changed, at + 1) * BUCKET, string.sub(changed, at + 2, at + 1 + BUCKET))
    end
    seq = seq + k
    redis.call('SETRANGE', key, 0, struct.pack('<I4I4', seq % 4294967296, math.floor(seq / 4294967296)))
    redis.call('PEXPIRE', key, ttl)
    return
  end
  local card = redis.call('GET', key)
  if (not card) or #card ~= SIZE then
    card = string.rep(string.char(0), SIZE)
    redis.call('SET', key, card)
    seq = 0
  end
  local function range(off, len)
    return string.sub(card, off + 1, off + len)
  end
  local seq0, written, buckets = seq, {{}}, {{}}
  for r = 0, #recs / REC - 1 do
    local rec = string.sub(recs, r * REC + 1, (r + 1) * REC)
    local tx, held = string.sub(rec, 1, 8), false
    for s = math.max(0, seq - R), seq - 1 do
      local slot = s % R
      local id = written[slot] and string.sub(written[slot], 1, 8) or range(RING0 + slot * REC, 8)
      if id == tx then held = true break end
    end
    if not held then
      local slot = seq % R
      if seq >= R then
        local moved = written[slot] and string.sub(written[slot], 9, 24) or range(RING0 + slot * REC + 8, 16)
        local ts, amount = struct.unpack('<i8i8', moved)
        local day = math.floor(ts / DAY)
        local b = day % B
        local d, n, sum = struct.unpack('<i4i4i8', buckets[b] or range(DAYS0 + b * BUCKET, BUCKET))
        if d <= day then
          if d ~= day then n, sum = 0, 0 end
          buckets[b] = struct.pack('<i4i4i8', day, n + 1, sum + amount)
        end
      end
      written[slot] = rec
      seq = seq + 1
    end
  end
  if seq ~= seq0 then
    for slot, rec in pairs(written) do redis.call('SETRANGE', key, RING0 + slot * REC, rec) end
    for b, bucket in pairs(buckets) do redis.call('SETRANGE', key, DAYS0 + b * BUCKET, bucket) end
    redis.call('SETRANGE', key, 0, struct.pack('<I4I4', seq % 4294967296, math.floor(seq / 4294967296)))
  end
  redis.call('PEXPIRE', key, ttl)
end
"""

# KEYS: customer keys, then terminal keys. ARGV, each list packed little-endian by numpy
# (`stream.state.featurestore.write_args`): #customers, ttl ms; per customer the record count
# the scorer read (i8), its new records (i4 count; the records, one after another) and the
# buckets they change (i4 count; the buckets); per terminal its #days (i4), then (day, count)
# i4 pairs of every terminal, one after another.
WRITE_BATCH = (
    _BUMP
    + _CARD
    + """
local nc, ttl = tonumber(ARGV[1]), ARGV[2]
local read, nrec, recs, nchg, chg, ndays, pairs = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local r, c = 1, 1
for i = 1, nc do
  local k, m = struct.unpack('<i4', nrec, 4 * i - 3), struct.unpack('<i4', nchg, 4 * i - 3)
  local rlen, clen = k * REC, m * (BUCKET + 1)
  local expected = struct.unpack('<i8', read, 8 * i - 7)
  card_append(KEYS[i], expected, string.sub(recs, r, r + rlen - 1), string.sub(chg, c, c + clen - 1), ttl)
  r, c = r + rlen, c + clen
end
local p = 1
for i = nc + 1, #KEYS do
  for _ = 1, struct.unpack('<i4', ndays, 4 * (i - nc) - 3) do
    local day, count = struct.unpack('<i4i4', pairs, p)
    bump(KEYS[i], day, 2, count)
    p = p + 8
  end
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return #KEYS
"""
)

# KEYS: ledger keys (one per claimed event). ARGV: ttl ms, then each claim's source id.
# Returns the ledger's previous values (false: the id was free). The store sends it with an
# MGET of the batch's entities in one MULTI/EXEC: Redis hands blobs to Lua and back at
# about three times MGET's cost, so the reads stay outside the script.
CLAIM_BATCH = """
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('SET', KEYS[i], ARGV[1 + i], 'NX', 'GET', 'PX', ARGV[1])
end
return out
"""

# KEYS: (terminal key, its labels set) pairs. ARGV: ttl ms, then (transaction id, day) per pair.
COUNT_LABELS = (
    _BUMP
    + """
local counted = 0
for j = 1, #KEYS / 2 do
  local ring, seen = KEYS[2 * j - 1], KEYS[2 * j]
  if redis.call('SADD', seen, ARGV[2 * j]) == 1 then
    bump(ring, tonumber(ARGV[2 * j + 1]), 3, 1)
    counted = counted + 1
  end
  redis.call('PEXPIRE', ring, ARGV[1])
  redis.call('PEXPIRE', seen, ARGV[1])
end
return counted
"""
)


def run(client: Client, script: Script, calls: Sequence[tuple[list[str], list[Any]]], failure: str) -> None:
    """Run `script` once per (keys, args): directly on a single primary (one call), through a
    cluster pipeline on a cluster; a node that lost the script (a promoted replica) gets it
    again and only the calls it refused are sent again. FeatureStoreError names `failure`."""
    if not calls:
        return
    try:
        cluster = isinstance(client, RedisCluster)  # (a flag: narrowing would lose redis-py's types)
        if not cluster:
            for keys, args in calls:
                script(keys=keys, args=args)
            return
        pending = list(calls)
        for _ in range(2):
            pipe = client.pipeline(transaction=False)
            for keys, args in pending:
                # EVALSHA through the generic call: redis-py blocks its method in cluster pipelines
                # for the NOSCRIPT case, which this loop handles.
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            replies = pipe.execute(raise_on_error=False)
            failed = [exc for exc in replies if isinstance(exc, Exception) and not isinstance(exc, NoScriptError)]
            if failed:
                raise failed[0]
            pending = [call for call, reply in zip(pending, replies, strict=True) if isinstance(reply, NoScriptError)]
            if not pending:
                return
            script.sha = client.script_load(script.script)
        raise FeatureStoreError(f"{failure}: the script is missing on a node after reloading it")
    except (redis.RedisError, OSError) as exc:
        raise FeatureStoreError(f"{failure}: {exc}") from exc


def claim_and_get(
    client: Client, claims: Script, ledger: list[str], sources: list[str], keys: list[str], ttl_ms: int
) -> list[Any]:
    """On a single primary, one MULTI/EXEC: the claims' previous values (CLAIM_BATCH), then the
    entities' blobs (MGET); the script loaded again once when Redis lost it (a restart)."""
    for attempt in range(2):
        if not (ledger or keys):
            return []
        pipe = client.pipeline(transaction=True)
        if ledger:
            pipe.evalsha(claims.sha, len(ledger), *ledger, ttl_ms, *sources)
        if keys:
            pipe.mget(keys)
        replies = pipe.execute(raise_on_error=False)
        if attempt == 0 and ledger and isinstance(replies[0], NoScriptError):
            claims.sha = client.script_load(claims.script)
            continue
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return (list(replies[0]) if ledger else []) + (list(replies[-1]) if keys else [])
    raise FeatureStoreError("feature read failed: the claim script is missing after loading it")
