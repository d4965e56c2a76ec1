-- Sliding window counter: the current window's count plus the previous window's count
-- weighted by its overlap with the trailing window. Atomic: one script, one round trip.
-- The reference is ratelab::algo::sliding_window (integer arithmetic scaled by the window, so
-- the two agree exactly).
-- Clock: Redis TIME in milliseconds unless ARGV[4] gives a time (one clock for all gateways).
-- KEYS[1]  hash {w = current window start ms, cur = units in it, prev = units in the one before}
-- ARGV[1]  limit   ARGV[2] window_ms   ARGV[3] cost   ARGV[4] now_ms, or '' for Redis TIME
-- Returns  {allowed (0|1), remaining, retry_after_ms (-1 = never), reset_after_ms}
-- The key's TTL covers the current and the next window, always set.

local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now_ms = tonumber(ARGV[4])
if now_ms == nil then
  local clock = redis.call('TIME')
  now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

local window_start_ms = now_ms - (now_ms % window_ms)
local stored = redis.call('HMGET', KEYS[1], 'w', 'cur', 'prev')
local stored_start_ms = tonumber(stored[1])
local current = 0
local previous = 0
if stored_start_ms == window_start_ms then
  current = tonumber(stored[2]) or 0
  previous = tonumber(stored[3]) or 0
elseif stored_start_ms == window_start_ms - window_ms then
  previous = tonumber(stored[2]) or 0
end

local elapsed_ms = now_ms - window_start_ms
local budget = limit * window_ms
local weighted = previous * (window_ms - elapsed_ms) + current * window_ms
local allowed = cost <= limit and weighted + cost * window_ms <= budget
local retry_after_ms = 0
if allowed then
  current = current + cost
elseif cost > limit then
  retry_after_ms = -1
elseif current + cost <= limit and previous > 0 then
  -- Still in this window, once enough of the previous window has slid out.
  local overlap_max = math.floor((limit - current - cost) * window_ms / previous)
  local elapsed_needed_ms = window_ms - math.min(overlap_max, window_ms)
  retry_after_ms = math.max(elapsed_needed_ms - elapsed_ms, 1)
else
  -- In the next window, where this window's count becomes the previous one.
  local until_next_ms = window_ms - elapsed_ms
  if current == 0 then
    retry_after_ms = until_next_ms
  else
    local overlap_max = math.floor((budget - cost * window_ms) / current)
    retry_after_ms = until_next_ms + window_ms - math.min(overlap_max, window_ms)
  end
end

local weighted_after = previous * (window_ms - elapsed_ms) + current * window_ms
local remaining = math.floor((budget - math.min(weighted_after, budget)) / window_ms)
local reset_after_ms = window_ms - elapsed_ms + window_ms
if allowed then
  redis.call('HSET', KEYS[1], 'w', window_start_ms, 'cur', current, 'prev', previous)
  redis.call('PEXPIRE', KEYS[1], reset_after_ms)
end

return {allowed and 1 or 0, remaining, retry_after_ms, reset_after_ms}
