-- Create a job's hash only if its key is absent: the first submit (init_job) and the rebuild
-- after a cache loss (restore). An existing key is never touched, so a restore racing a live
-- writer cannot overwrite counts that writer already made.
--
-- KEYS[1]  the job hash
-- KEYS[2]  the backlog hash (items not yet terminal per model:priority and per tenant)
-- KEYS[3]  the live set: the keys of jobs that hold backlog, by expires_at (for reconciling)
-- KEYS[4]  the webhook due set; KEYS[5] the job's webhook subscription (store/webhooks.py):
--          a hash rebuilt terminal puts a still pending webhook on the due set
-- ARGV[1]  expires_at in epoch milliseconds (PEXPIREAT: the hash lives and dies with the job)
-- ARGV[2]  items this job adds to the backlog (total on submit; not-yet-done on restore)
-- ARGV[3..] field, value pairs: the job fields and, on restore, the markers of done items
-- Returns 1 when created, 0 when the key already existed or expires_at has already passed
-- (PEXPIREAT in the past deletes the key at once).
local key = KEYS[1]
if redis.call('EXISTS', key) == 1 then
  return 0
end
-- Lua 5.1's unpack() is bounded by the C stack (~8000 values): write in slices.
local SLICE = 2000
for first = 3, #ARGV, SLICE do
  local last = math.min(first + SLICE - 1, #ARGV)
  redis.call('HSET', key, unpack(ARGV, first, last))
end
redis.call('PEXPIREAT', key, ARGV[1])
local created = redis.call('EXISTS', key)
local add = tonumber(ARGV[2])
if created == 1 and add > 0 then
  local j = redis.call('HMGET', key, 'model', 'priority', 'tenant')
  redis.call('HINCRBY', KEYS[2], 'm:' .. j[1] .. ':' .. j[2], add)
  redis.call('HINCRBY', KEYS[2], 't:' .. j[3], add)
  redis.call('ZADD', KEYS[3], tonumber(ARGV[1]) / 1000, key)
end
if created == 1 then
  local h = redis.call('HMGET', key, 'status', 'finished_at')
  if (h[1] == 'succeeded' or h[1] == 'failed')
      and redis.call('HGET', KEYS[5], 'state') == 'pending' then
    redis.call('ZADD', KEYS[4], 'NX', h[2], KEYS[5])
  end
end
return created
