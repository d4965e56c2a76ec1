-- Sliding log: one sorted-set entry per admitted unit, scored by its time; a request is
-- admitted when the units inside the trailing window (now - W, now] plus its cost fit the
-- limit. Atomic: one script, one round trip. The reference is ratelab::algo::sliding_log.
-- Exact bound: at most `limit` units in every trailing window of length W.
-- Clock: Redis TIME in milliseconds unless ARGV[4] gives a time (one clock for every gateway).
-- KEYS[1]  sorted set: members "<ms>:<seq>" scored by ms, plus "#seq" scored -seq (the
--          member counter, kept below zero so the window's range never touches it)
-- ARGV[1]  limit   ARGV[2] window_ms   ARGV[3] cost   ARGV[4] now_ms, or '' for Redis TIME
-- Returns  {allowed (0|1), remaining, retry_after_ms (-1 = never), reset_after_ms}
-- The key's TTL is the time until its newest entry leaves the window, always set.

local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now_ms = tonumber(ARGV[4])
if now_ms == nil then
  local clock = redis.call('TIME')
  now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

local key = KEYS[1]
if now_ms >= window_ms then
  redis.call('ZREMRANGEBYSCORE', key, 0, now_ms - window_ms)
end
local used = redis.call('ZCOUNT', key, 0, '+inf')

local allowed = cost <= limit and used + cost <= limit
local retry_after_ms = 0
if allowed then
  if cost > 0 then
    local last_seq = -tonumber(redis.call('ZINCRBY', key, -cost, '#seq'))
    for index = 1, cost do
      local member = string.format('%d:%d', now_ms, last_seq - cost + index)
      redis.call('ZADD', key, now_ms, member)
    end
    used = used + cost
  end
elseif cost > limit then
  retry_after_ms = -1
else
  -- The request fits once the (used + cost - limit) oldest entries have left the window.
  local must_leave = used + cost - limit
  local entry = redis.call('ZRANGE', key, 0, '+inf', 'BYSCORE', 'LIMIT', must_leave - 1, 1, 'WITHSCORES')
  retry_after_ms = tonumber(entry[2]) + window_ms - now_ms
end

local reset_after_ms = 0
local newest = redis.call('ZRANGE', key, '+inf', 0, 'BYSCORE', 'REV', 'LIMIT', 0, 1, 'WITHSCORES')
if newest[2] ~= nil then
  reset_after_ms = tonumber(newest[2]) + window_ms - now_ms
  redis.call('PEXPIRE', key, math.max(reset_after_ms, 1))
end

return {allowed and 1 or 0, limit - used, retry_after_ms, reset_after_ms}
