-- Success limit, admission: reserve a slot so that requests in flight count (the fix for
-- new-api's race R1). Admits when successes in the trailing window plus live reservations
-- are below the limit. Atomic: one script, one round trip. The reference is
-- ratelab::algo::reservation::reserve. Bound: at most `limit` successes in any trailing window
-- while leases outlive their requests (each early lease expiry can add one).
-- Clock: Redis TIME in milliseconds unless ARGV[4] gives a time.
-- KEYS[1]  sorted set of successes: member = reservation id, score = completion ms
-- KEYS[2]  sorted set of live reservations: member = id, score = lease expiry ms
-- KEYS[3]  string: a counter for reservation ids
-- Ids are "<reservation ms>:<counter>": the counter expires with the other keys, and every key
-- outlives every entry, so a restarted counter only ever pairs with a later time than any
-- ticket still held (a clock that steps back by more than a lease could repeat an id).
-- ARGV[1]  limit   ARGV[2] window_ms   ARGV[3] lease_ms   ARGV[4] now_ms, or '' for Redis TIME
-- Returns  {allowed (0|1), remaining, retry_after_ms, reset_after_ms, id ('' when denied)}
-- All three keys get a TTL that outlives every entry, always set.

local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local now_ms = tonumber(ARGV[4])
if now_ms == nil then
  local clock = redis.call('TIME')
  now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

if now_ms >= window_ms then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now_ms - window_ms)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], 0, now_ms)
local used = redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2])

local allowed = used < limit
local id = ''
if allowed then
  id = string.format('%d:%d', now_ms, redis.call('INCR', KEYS[3]))
  redis.call('ZADD', KEYS[2], now_ms + lease_ms, id)
  used = used + 1
end

-- The earliest moment a slot could free, and the moment everything is gone.
local retry_after_ms = nil
local reset_after_ms = 0
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] ~= nil then
  retry_after_ms = tonumber(oldest[2]) + window_ms - now_ms
end
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if newest[2] ~= nil then
  reset_after_ms = tonumber(newest[2]) + window_ms - now_ms
end
local earliest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if earliest[2] ~= nil then
  local wait_ms = tonumber(earliest[2]) - now_ms
  if retry_after_ms == nil or wait_ms < retry_after_ms then
    retry_after_ms = wait_ms
  end
end
local latest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if latest[2] ~= nil then
  reset_after_ms = math.max(reset_after_ms, tonumber(latest[2]) - now_ms)
end
if allowed or retry_after_ms == nil then
  retry_after_ms = 0
end

if reset_after_ms > 0 then
  for index = 1, 3 do
    redis.call('PEXPIRE', KEYS[index], reset_after_ms)
  end
end

return {allowed and 1 or 0, limit - math.min(used, limit), retry_after_ms, reset_after_ms, id}
