"""The feature store's Lua scripts: each runs atomically inside Redis, on the keys it is given.

On a single primary one WRITE_BATCH call carries a whole micro-batch; on a Redis Cluster a
script may only touch keys of one hash slot, so the store calls it once per entity key
(each key's braces are its hash tag) — see `stream.state.featurestore`.
"""

from __future__ import annotations

from models.featureset import BUCKET_DTYPE, DAY_BUCKETS, HISTORY_DTYPE, RING_DAYS, RING_RECORDS
from models.units import DAY_MS

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
_CARD = f"""
local REC, R, B, BUCKET, DAY = {HISTORY_DTYPE.itemsize}, {RING_RECORDS}, {DAY_BUCKETS}, {BUCKET_DTYPE.itemsize}, {DAY_MS}
local RING0 = 8
local DAYS0 = RING0 + R * REC
local SIZE = DAYS0 + B * BUCKET
local function to_bucket(days, ts, amount)
  local day = math.floor(ts / DAY)
  local b = day % B
  local d, n, sum = struct.unpack('<i4i4i8', days[b])
  if d ~= day then
    if d > day then return end
    n, sum = 0, 0
  end
  days[b] = struct.pack('<i4i4i8', day, n + 1, sum + amount)
end
local function card_append(key, recs, ttl)
  local card = redis.call('GET', KEYS[key])
  if (not card) or #card ~= SIZE then card = string.rep(string.char(0), SIZE) end
  local lo, hi = struct.unpack('<I4I4', card)
  local seq = lo + hi * 4294967296
  local ring, days = {{}}, {{}}
  for s = 0, R - 1 do ring[s] = string.sub(card, RING0 + s * REC + 1, RING0 + (s + 1) * REC) end
  for b = 0, B - 1 do days[b] = string.sub(card, DAYS0 + b * BUCKET + 1, DAYS0 + (b + 1) * BUCKET) end
  for r = 0, #recs / REC - 1 do
    local rec = string.sub(recs, r * REC + 1, (r + 1) * REC)
    local tx, held = string.sub(rec, 1, 8), false
    for s = math.max(0, seq - R), seq - 1 do
      if string.sub(ring[s % R], 1, 8) == tx then held = true break end
    end
    if not held then
      local slot = seq % R
      if seq >= R then
        local ts, amount = struct.unpack('<i8i8', ring[slot], 9)
        to_bucket(days, ts, amount)
      end
      ring[slot] = rec
      seq = seq + 1
    end
  end
  local parts = {{struct.pack('<I4I4', seq % 4294967296, math.floor(seq / 4294967296))}}
  for s = 0, R - 1 do parts[#parts + 1] = ring[s] end
  for b = 0, B - 1 do parts[#parts + 1] = days[b] end
  redis.call('SET', KEYS[key], table.concat(parts), 'PX', ttl)
end
"""

# KEYS: customer keys, then terminal keys. ARGV: #customers, ttl ms, one blob of records
# per customer, then per terminal: #days, (day, count)...
WRITE_BATCH = (
    _BUMP
    + _CARD
    + """
local nc, ttl = tonumber(ARGV[1]), ARGV[2]
local a = 3
for i = 1, nc do
  card_append(i, ARGV[a], ttl)
  a = a + 1
end
for i = nc + 1, #KEYS do
  local days = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, days do
    bump(KEYS[i], tonumber(ARGV[a]), 2, tonumber(ARGV[a + 1]))
    a = a + 2
  end
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return #KEYS
"""
)

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
