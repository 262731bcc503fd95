-- Job-level failure (cancel, deadline exceeded, model unavailable): every item without an
-- 's'/'f' marker gets 'f' and is counted failed; the job ends 'failed' with the error, its
-- outcome 'partial' when some items had succeeded, else 'all_failed'. A terminal job is never
-- changed. The tenant's usage of the day (usage.lua) gets the newly failed items and one
-- failed job.
--
-- KEYS[1]  the job hash
-- KEYS[2]  the backlog hash: newly failed items leave it
-- KEYS[3]  the live set: the job leaves it
-- KEYS[4]  the webhook due set; KEYS[5] the job's webhook subscription (store/webhooks.py)
-- ARGV[1]  now (epoch seconds)
-- ARGV[2]  error code
-- ARGV[3]  error message
-- ARGV[4]  the UTC day of now (YYYY-MM-DD); ARGV[5] the usage key prefix (store/usage.py)
-- Returns {status, outcome, {newly failed indexes}, became_terminal (0|1)}, or false when the
-- hash is missing (the caller restores and retries).
local key = KEYS[1]
local h = redis.call('HMGET', key, 'status', 'outcome', 'total', 'succeeded', 'failed')
local status, outcome = h[1], h[2]
if not status then
  return false
end
if status == 'succeeded' or status == 'failed' then
  return {status, outcome, {}, 0}
end
local total, succeeded, failed = tonumber(h[3]), tonumber(h[4]), tonumber(h[5])
-- One HGETALL inside the script, then a table lookup per item: about half the time of an
-- HGET per item (10,000 items: ~9 ms against ~19 ms, round trip included).
local done, all = {}, redis.call('HGETALL', key)
for i = 1, #all, 2 do
  local v = all[i + 1]
  if v == 's' or v == 'f' then
    done[all[i]] = true
  end
end
local newly, pairs_, SLICE = {}, {}, 2000
for n = 0, total - 1 do
  local field = 'i:' .. n
  if not done[field] then
    newly[#newly + 1] = n
    pairs_[#pairs_ + 1] = field
    pairs_[#pairs_ + 1] = 'f'
    if #pairs_ >= SLICE then
      redis.call('HSET', key, unpack(pairs_))
      pairs_ = {}
    end
  end
end
if #pairs_ > 0 then
  redis.call('HSET', key, unpack(pairs_))
end
failed = failed + #newly
local j = redis.call('HMGET', key, 'model', 'priority', 'tenant', 'expires_at')
if #newly > 0 then
  redis.call('HINCRBY', KEYS[2], 'm:' .. j[1] .. ':' .. j[2], -#newly)
  redis.call('HINCRBY', KEYS[2], 't:' .. j[3], -#newly)
end
if succeeded > 0 then outcome = 'partial' else outcome = 'all_failed' end
-- A job failed while queued keeps started_at empty: none of its items ever ran.
redis.call('HSET', key, 'status', 'failed', 'outcome', outcome, 'finished_at', ARGV[1],
  'failed', failed, 'running', 0, 'error_code', ARGV[2], 'error_message', ARGV[3])
redis.call('HINCRBY', key, 'rev', 1)
redis.call('ZREM', KEYS[3], key)
local now = ARGV[1]
add_usage(ARGV[5], ARGV[4], {j[1], j[3], j[4]},
          {items_failed = #newly, jobs_failed = 1})
-- A job that ends is put on the webhook due set, if its webhook is still pending
-- (store/webhooks.py): atomically with the end, whichever process made it.
if redis.call('HGET', KEYS[5], 'state') == 'pending' then
  redis.call('ZADD', KEYS[4], 'NX', now, KEYS[5])
end
return {'failed', outcome, newly, 1}
