-- Several GCRA limits on one request (for example a user's total, per-model and per-group
-- limits), checked and consumed all or nothing in one call: either every limit admits and
-- every TAT advances, or nothing is written. Atomic: one script, one round trip. The
-- reference is ratelab::algo::gcra::decide_all.
-- On Redis Cluster all KEYS must share a hash tag (e.g. {u:<user>}), as every script's keys
-- must share a slot; a limit shared by all users cannot join a per-user call there.
-- Clock: Redis TIME in milliseconds unless ARGV[2] gives a time.
-- KEYS[i]  string: limit i's TAT in ms
-- ARGV[1]  cost   ARGV[2] now_ms, or '' for Redis TIME
-- ARGV[2 + 2i - 1], ARGV[2 + 2i]  limit i's burst and interval_ms
-- Returns  {allowed (0|1), denied_by (1-based index of the first limit that denied, 0 if
--          none), remaining (smallest over the limits), retry_after_ms (largest; -1 = never),
--          reset_after_ms (largest)}

local cost = tonumber(ARGV[1])
local now_ms = tonumber(ARGV[2])
if now_ms == nil then
  local clock = redis.call('TIME')
  now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

local count = #KEYS
local limits = {}
local denied_by = 0
for index = 1, count do
  local burst = tonumber(ARGV[1 + 2 * index])
  local interval_ms = tonumber(ARGV[2 + 2 * index])
  local tat_ms = math.max(tonumber(redis.call('GET', KEYS[index])) or now_ms, now_ms)
  local limit = {
    burst = burst,
    interval_ms = interval_ms,
    capacity_ms = burst * interval_ms,
    tat_ms = tat_ms,
    used_ms = tat_ms - now_ms,
  }
  limit.fits = cost <= burst and limit.used_ms + cost * interval_ms <= limit.capacity_ms
  if not limit.fits and denied_by == 0 then
    denied_by = index
  end
  limits[index] = limit
end

local allowed = denied_by == 0
local remaining = nil
local retry_after_ms = 0
local reset_after_ms = 0
for index = 1, count do
  local limit = limits[index]
  local used_after_ms = limit.used_ms
  if allowed then
    used_after_ms = limit.used_ms + cost * limit.interval_ms
    if cost > 0 then
      redis.call('SET', KEYS[index], limit.tat_ms + cost * limit.interval_ms, 'PX', used_after_ms)
    end
  elseif not limit.fits then
    if cost > limit.burst or retry_after_ms == -1 then
      retry_after_ms = -1
    else
      retry_after_ms = math.max(retry_after_ms, limit.used_ms + cost * limit.interval_ms - limit.capacity_ms)
    end
  end
  local left = math.floor(math.max(limit.capacity_ms - used_after_ms, 0) / limit.interval_ms)
  if remaining == nil or left < remaining then
    remaining = left
  end
  reset_after_ms = math.max(reset_after_ms, used_after_ms)
end

return {allowed and 1 or 0, denied_by, remaining or 0, retry_after_ms, reset_after_ms}
