"""The feature store's Lua scripts: each runs atomically inside Redis, on the keys it is given.

On a single primary one WRITE_BATCH call carries a whole micro-batch; on a Redis Cluster a
script may only touch keys of one hash slot, so the store calls it once per entity key
(each key's braces are its hash tag) — see `stream.state.featurestore`.
"""

from __future__ import annotations

from models.featureset import RING_DAYS

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

# KEYS: customer keys, then terminal keys. ARGV: #customers, ttl ms, bytes kept, bytes
# that trigger a cut, one blob per customer, then per terminal: #days, (day, count)...
WRITE_BATCH = (
    _BUMP
    + """
local nc, ttl, keep, cap = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local a = 5
for i = 1, nc do
  local len = redis.call('APPEND', KEYS[i], ARGV[a])
  a = a + 1
  if len > cap then redis.call('SET', KEYS[i], redis.call('GETRANGE', KEYS[i], len - keep, len - 1)) end
  redis.call('PEXPIRE', KEYS[i], ttl)
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
