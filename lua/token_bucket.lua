-- Token bucket with millisecond precision, as integer credit: a full bucket holds
-- burst * interval_ms of credit, time adds 1 ms of credit per ms, a unit costs interval_ms.
-- Atomic: one script, one round trip. The reference is ratelab::algo::token_bucket.
-- Clock: Redis TIME in milliseconds unless ARGV[4] gives a time: one clock for every gateway,
-- so gateway skew (race R6) cannot matter. A Redis clock that steps back adds no credit.
-- KEYS[1]  hash {credit = credit in ms, last = ms of the last refill}
-- ARGV[1]  burst (units)   ARGV[2] interval_ms (refill time per unit)   ARGV[3] cost (units)
-- ARGV[4]  now_ms, or '' for Redis TIME
-- Returns  {allowed (0|1), remaining, retry_after_ms (-1 = never), reset_after_ms}
-- The key's TTL is the time until the bucket is full again, always set (>= 1 ms), so idle
-- buckets leave Redis (unlike new-api's, which never expire).

local burst = tonumber(ARGV[1])
local interval_ms = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now_ms = tonumber(ARGV[4])
if now_ms == nil then
  local clock = redis.call('TIME')
  now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

local capacity_ms = burst * interval_ms
local stored = redis.call('HMGET', KEYS[1], 'credit', 'last')
local credit_ms = tonumber(stored[1])
local last_ms = tonumber(stored[2])
if credit_ms == nil or last_ms == nil then
  credit_ms = capacity_ms
  last_ms = now_ms
else
  local elapsed_ms = math.max(now_ms - last_ms, 0)
  credit_ms = math.min(capacity_ms, credit_ms + elapsed_ms)
  last_ms = math.max(last_ms, now_ms)
end

local allowed = cost <= burst and cost * interval_ms <= credit_ms
local retry_after_ms = 0
if allowed then
  credit_ms = credit_ms - cost * interval_ms
elseif cost > burst then
  retry_after_ms = -1
else
  retry_after_ms = cost * interval_ms - credit_ms
end

local reset_after_ms = capacity_ms - credit_ms
redis.call('HSET', KEYS[1], 'credit', credit_ms, 'last', last_ms)
redis.call('PEXPIRE', KEYS[1], math.max(reset_after_ms, 1))

return {allowed and 1 or 0, math.floor(credit_ms / interval_ms), retry_after_ms, reset_after_ms}
