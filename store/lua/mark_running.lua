-- Mark items running: each item without a marker gets 'r' and running += 1; the first one
-- moves a queued job to running. A terminal job is never changed.
--
-- KEYS[1]  the job hash
-- ARGV[1]  now (epoch seconds, stored verbatim as started_at)
-- ARGV[2..] item indexes
-- Returns the job status, or false when the hash is missing (the caller restores and retries).
local key = KEYS[1]
local h = redis.call('HMGET', key, 'status', 'total')
local status, total = h[1], tonumber(h[2])
if not status then
  return false
end
if status == 'succeeded' or status == 'failed' then
  return status
end
-- Validate everything before the first write: a script error does not roll back.
for i = 2, #ARGV do
  local n = tonumber(ARGV[i])
  if not n or n % 1 ~= 0 or n < 0 or n >= total then
    return redis.error_reply('ERR inferq: item index ' .. ARGV[i] .. ' outside 0..' .. (total - 1))
  end
end
local added = 0
for i = 2, #ARGV do
  added = added + redis.call('HSETNX', key, 'i:' .. tonumber(ARGV[i]), 'r')
end
if added == 0 then
  return status
end
redis.call('HINCRBY', key, 'running', added)
if status == 'queued' then
  status = 'running'
  redis.call('HSET', key, 'status', status, 'started_at', ARGV[1])
end
redis.call('HINCRBY', key, 'rev', 1)
return status
