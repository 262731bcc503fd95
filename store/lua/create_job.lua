-- Create a job's hash only if its key is absent: the first submit (init_job) and the rebuild
-- after a cache loss (restore). An existing key is never touched, so a restore racing a live
-- writer cannot overwrite counts that writer already made.
--
-- KEYS[1]  the job hash
-- ARGV[1]  expires_at in epoch milliseconds (PEXPIREAT: the hash lives and dies with the job)
-- ARGV[2..] field, value pairs: the job fields and, on restore, the markers of done items
-- Returns 1 when created, 0 when the key already existed or expires_at has already passed
-- (PEXPIREAT in the past deletes the key at once).
local key = KEYS[1]
if redis.call('EXISTS', key) == 1 then
  return 0
end
-- Lua 5.1's unpack() is bounded by the C stack (~8000 values): write in slices.
local SLICE = 2000
for first = 2, #ARGV, SLICE do
  local last = math.min(first + SLICE - 1, #ARGV)
  redis.call('HSET', key, unpack(ARGV, first, last))
end
redis.call('PEXPIREAT', key, ARGV[1])
return redis.call('EXISTS', key)
