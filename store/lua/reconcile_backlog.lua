-- Recompute the backlog hash from the jobs themselves: for every job in the live set, the
-- items not yet terminal (total - succeeded - failed), summed per model:priority and per
-- tenant. The counting scripts keep the hash exact while Redis keeps its data; this heals
-- what they cannot see (a job hash deleted and restored while the counters survived, a job
-- that expired unfinished). Members whose hash is gone or terminal leave the set.
--
-- KEYS[1]  the live set (job hash keys by expires_at, in seconds)
-- KEYS[2]  the backlog hash
-- KEYS[3]  a marker that spaces runs: with several gateways, one runs per interval
-- ARGV[1]  now (epoch seconds)
-- ARGV[2]  the interval (ms): skip if another run happened within it (0: always run)
-- Returns {live jobs, then field, old value, new value for every field that changed}, or
-- {-1} when skipped. O(live jobs): run it now and then (every minute), not per request.
local now = tonumber(ARGV[1])
if tonumber(ARGV[2]) > 0 and not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then
  return {-1}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local sums, live = {}, 0
for _, key in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = redis.call('HMGET', key, 'status', 'total', 'succeeded', 'failed', 'model',
    'priority', 'tenant')
  if not h[1] or h[1] == 'succeeded' or h[1] == 'failed' then
    redis.call('ZREM', KEYS[1], key)
  else
    live = live + 1
    local pending = tonumber(h[2]) - tonumber(h[3]) - tonumber(h[4])
    local m, t = 'm:' .. h[5] .. ':' .. h[6], 't:' .. h[7]
    sums[m] = (sums[m] or 0) + pending
    sums[t] = (sums[t] or 0) + pending
  end
end
local out, old = {live}, {}
local flat = redis.call('HGETALL', KEYS[2])
for i = 1, #flat, 2 do
  old[flat[i]] = tonumber(flat[i + 1])
end
for field, value in pairs(old) do
  local want = sums[field] or 0
  if value ~= want then
    out[#out + 1] = field
    out[#out + 1] = value
    out[#out + 1] = want
    if want == 0 then
      redis.call('HDEL', KEYS[2], field)
    else
      redis.call('HSET', KEYS[2], field, want)
    end
  end
end
for field, want in pairs(sums) do
  if old[field] == nil and want ~= 0 then
    out[#out + 1] = field
    out[#out + 1] = 0
    out[#out + 1] = want
    redis.call('HSET', KEYS[2], field, want)
  end
end
return out
