-- Success limit, completion: turn a reservation into a success stamped with the completion
-- time, or release it when the request failed. The reference is
-- ratelab::algo::reservation::complete. A success is recorded even when its lease had expired
-- (the request did succeed); the reserve script's bound says what that costs.
-- Clock: Redis TIME in milliseconds unless ARGV[4] gives a time.
-- KEYS[1]  sorted set of successes   KEYS[2] sorted set of reservations   KEYS[3] id counter
-- ARGV[1]  reservation id   ARGV[2] 1 when the request succeeded, 0 when it failed
-- ARGV[3]  window_ms   ARGV[4] now_ms, or '' for Redis TIME
-- Returns  {held (1 if the reservation was still live), recorded (1 if a success was added)}

local id = ARGV[1]
local succeeded = ARGV[2] == '1'
local window_ms = tonumber(ARGV[3])
local now_ms = tonumber(ARGV[4])
if now_ms == nil then
  local clock = redis.call('TIME')
  now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

if now_ms >= window_ms then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now_ms - window_ms)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], 0, now_ms)
local held = redis.call('ZREM', KEYS[2], id)

if succeeded then
  redis.call('ZADD', KEYS[1], now_ms, id)
  -- The new success lives a whole window: every key must outlive it (the counter too, so
  -- that ids are never reused while an entry with the same id exists).
  for index = 1, 3 do
    if redis.call('PTTL', KEYS[index]) < window_ms then
      redis.call('PEXPIRE', KEYS[index], window_ms)
    end
  end
end

return {held, succeeded and 1 or 0}
