-- new-api's model-request token bucket (path C2), reproduced for ratelab's legacy limiter.
-- Behaviour as new-api ships it: Redis TIME in whole seconds, HMGET then HMSET on every call
-- (denials write too), no TTL on the hash, no clamp at zero when the clock steps back.
-- KEYS[1]  bucket hash {tokens, last_time}
-- ARGV[1]  requested tokens (new-api passes the window D in seconds)
-- ARGV[2]  refill rate in tokens per second (new-api passes N)
-- ARGV[3]  capacity (new-api passes N * D)
-- Returns  1 when admitted, 0 when denied

local requested = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])

local clock = redis.call('TIME')
local now_s = tonumber(clock[1])

local stored = redis.call('HMGET', KEYS[1], 'tokens', 'last_time')
local tokens = tonumber(stored[1])
local last_time = tonumber(stored[2])

if tokens == nil or last_time == nil then
  tokens = capacity
  last_time = now_s
else
  local elapsed_s = now_s - last_time
  tokens = math.min(capacity, tokens + elapsed_s * rate)
  last_time = now_s
end

local admitted = false
if tokens >= requested then
  tokens = tokens - requested
  admitted = true
end

redis.call('HMSET', KEYS[1], 'tokens', tokens, 'last_time', last_time)

if admitted then
  return 1
end
return 0
