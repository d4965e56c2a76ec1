-- Fixed window counter. Atomic: one script, one round trip.
-- The reference is ratelab::algo::fixed_window (same state, same arithmetic, same replies).
-- Clock: Redis TIME in milliseconds unless ARGV[4] gives a time, so every gateway sees one
-- clock and gateway skew cannot split a window (tests pass ARGV[4] to replay exact times).
-- KEYS[1]  hash {w = window start ms, c = units admitted in that window}
-- ARGV[1]  limit (units per window)   ARGV[2] window_ms   ARGV[3] cost (units)
-- ARGV[4]  now_ms, or '' for Redis TIME
-- Returns  {allowed (0|1), remaining, retry_after_ms (-1 = never), reset_after_ms}
-- The key's TTL is the time left in its window, always set.

local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now_ms = tonumber(ARGV[4])
if now_ms == nil then
  local clock = redis.call('TIME')
  now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

local window_start_ms = now_ms - (now_ms % window_ms)
local stored = redis.call('HMGET', KEYS[1], 'w', 'c')
local count = 0
if tonumber(stored[1]) == window_start_ms then
  count = tonumber(stored[2]) or 0
end

local reset_after_ms = window_start_ms + window_ms - now_ms
local allowed = count + cost <= limit
local retry_after_ms = 0
if allowed then
  count = count + cost
  redis.call('HSET', KEYS[1], 'w', window_start_ms, 'c', count)
  redis.call('PEXPIRE', KEYS[1], reset_after_ms)
elseif cost > limit then
  retry_after_ms = -1
else
  retry_after_ms = reset_after_ms
end

return {allowed and 1 or 0, limit - count, retry_after_ms, reset_after_ms}
