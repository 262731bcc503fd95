-- Count item results exactly once. An item whose marker is already 's' or 'f' was counted
-- before (a redelivered batch) and is skipped; 'r' or no marker gets the new marker and one
-- count. When succeeded + failed reaches total the job becomes terminal, by the rule of
-- schemas.states.derive_job_state. A terminal job is never changed (late completions of a
-- cancelled job count nothing). What is counted is added to the tenant's usage of the day
-- (usage.lua): items by status, the input tokens and inference time of the items counted
-- now (a replay adds nothing), and the job's status when it ends.
--
-- KEYS[1]  the job hash
-- KEYS[2]  the backlog hash: counted items leave it (per model:priority and per tenant)
-- KEYS[3]  the live set: a job that becomes terminal leaves it
-- KEYS[4]  the webhook due set; KEYS[5] the job's webhook subscription (store/webhooks.py)
-- ARGV[1]  now (epoch seconds)
-- ARGV[2]  the UTC day of now (YYYY-MM-DD); ARGV[3] the usage key prefix (store/usage.py)
-- ARGV[4..] index, mark, input tokens, inference microseconds: one quadruple per item; mark
--          is 's' (succeeded) or 'f' (failed)
-- Returns {status, outcome or '', newly_counted, became_terminal (0|1)}, or false when the
-- hash is missing (the caller restores and retries).
local key = KEYS[1]
local h = redis.call('HMGET', key, 'status', 'outcome', 'total', 'succeeded', 'failed')
local status, outcome = h[1], h[2]
if not status then
  return false
end
if status == 'succeeded' or status == 'failed' then
  return {status, outcome, 0, 0}
end
local total = tonumber(h[3])
if #ARGV % 4 ~= 3 then
  return redis.error_reply('ERR inferq: record_results takes index, mark, tokens, us quadruples')
end
for i = 4, #ARGV, 4 do
  local n, mark = tonumber(ARGV[i]), ARGV[i + 1]
  if not n or n % 1 ~= 0 or n < 0 or n >= total then
    return redis.error_reply('ERR inferq: item index ' .. ARGV[i] .. ' outside 0..' .. (total - 1))
  end
  if mark ~= 's' and mark ~= 'f' then
    return redis.error_reply('ERR inferq: item mark must be s or f, got ' .. mark)
  end
end
local ds, df, was_running, tokens, us = 0, 0, 0, 0, 0
for i = 4, #ARGV, 4 do
  local field, mark = 'i:' .. tonumber(ARGV[i]), ARGV[i + 1]
  local old = redis.call('HGET', key, field)
  if old ~= 's' and old ~= 'f' then
    if old == 'r' then
      was_running = was_running + 1
    end
    redis.call('HSET', key, field, mark)
    if mark == 's' then ds = ds + 1 else df = df + 1 end
    tokens = tokens + (tonumber(ARGV[i + 2]) or 0)
    us = us + (tonumber(ARGV[i + 3]) or 0)
  end
end
local counted = ds + df
if counted == 0 then
  return {status, '', 0, 0}
end
local j = redis.call('HMGET', key, 'model', 'priority', 'tenant', 'expires_at')
redis.call('HINCRBY', KEYS[2], 'm:' .. j[1] .. ':' .. j[2], -counted)
redis.call('HINCRBY', KEYS[2], 't:' .. j[3], -counted)
local succeeded, failed = tonumber(h[4]) + ds, tonumber(h[5]) + df
redis.call('HSET', key, 'succeeded', succeeded, 'failed', failed)
if was_running > 0 then
  redis.call('HINCRBY', key, 'running', -was_running)
end
local now, became = ARGV[1], 0
local usage = {items_succeeded = ds, items_failed = df, input_tokens = tokens,
               inference_us = us}
if status == 'queued' then
  -- Results without mark_running (or after a restore): the job has started all the same.
  redis.call('HSET', key, 'started_at', now)
end
if succeeded + failed == total then
  if failed == 0 then
    status, outcome = 'succeeded', 'all_succeeded'
  elseif succeeded == 0 then
    status, outcome = 'failed', 'all_failed'
  else
    status, outcome = 'succeeded', 'partial'
  end
  became = 1
  usage['jobs_' .. status] = 1
  redis.call('ZREM', KEYS[3], key)
  redis.call('HSET', key, 'status', status, 'outcome', outcome, 'finished_at', now)
  -- A job that ends is put on the webhook due set, if its webhook is still pending
  -- (store/webhooks.py): atomically with the end, whichever process made it.
  if redis.call('HGET', KEYS[5], 'state') == 'pending' then
    redis.call('ZADD', KEYS[4], 'NX', now, KEYS[5])
  end
else
  status, outcome = 'running', ''
  redis.call('HSET', key, 'status', status)
end
add_usage(ARGV[3], ARGV[2], {j[1], j[3], j[4]}, usage)
redis.call('HINCRBY', key, 'rev', 1)
return {status, outcome, counted, became}
