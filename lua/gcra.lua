-- GCRA: one number per key, the theoretical arrival time (TAT). Atomic: one script, one
-- round trip. The reference is ratelab::algo::gcra. A denial writes nothing.
-- Clock: Redis TIME in milliseconds unless ARGV[4] gives a time. With one primary the bound
-- B + floor(delta / T) is exact; a failover to a primary whose clock is e ms ahead admits up
-- to ceil(e / T) extra.
-- KEYS[1]  string: TAT in ms
-- ARGV[1]  burst (units)   ARGV[2] interval_ms (T)   ARGV[3] cost (units)
-- ARGV[4]  now_ms, or '' for Redis TIME
-- Returns  {allowed (0|1), remaining, retry_after_ms (-1 = never), reset_after_ms}
-- The key's TTL is TAT - now (when it reaches 0 the key is equivalent to a missing one).

local burst = tonumber(ARGV[1])
local interval_ms = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now_ms = tonumber(ARGV[4])
if now_ms == nil then
  local clock = redis.call('TIME')
  now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

local capacity_ms = burst * interval_ms
local tat_ms = tonumber(redis.call('GET', KEYS[1])) or now_ms
tat_ms = math.max(tat_ms, now_ms)
local used_ms = tat_ms - now_ms

local allowed = cost <= burst and used_ms + cost * interval_ms <= capacity_ms
local retry_after_ms = 0
if allowed then
  used_ms = used_ms + cost * interval_ms
  if cost > 0 then
    redis.call('SET', KEYS[1], tat_ms + cost * interval_ms, 'PX', used_ms)
  end
elseif cost > burst then
  retry_after_ms = -1
else
  retry_after_ms = used_ms + cost * interval_ms - capacity_ms
end

-- A Redis clock that stepped back can leave more than the capacity in use: nothing remains.
local remaining = math.floor(math.max(capacity_ms - used_ms, 0) / interval_ms)
return {allowed and 1 or 0, remaining, retry_after_ms, used_ms}
