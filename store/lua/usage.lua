-- Prepended to record_results.lua and fail_remaining.lua (store/jobstate/cache.py): adds to a
-- tenant's usage hash of one UTC day (store/usage.py) in the same atomic call that counts.
--
-- add_usage(prefix, day, job, counts): job is {model, tenant, expires_at} as the job
-- hash holds them; counts maps counter names to increments (zeros are skipped). The hash
-- expires one day after the latest expires_at of the jobs counted into it, never sooner.
local function add_usage(prefix, day, job, counts)
  local ukey = prefix .. job[2] .. ':' .. day
  local added = false
  for name, n in pairs(counts) do
    if n ~= 0 then
      redis.call('HINCRBY', ukey, job[1] .. '|' .. name, n)
      added = true
    end
  end
  if not added then
    return
  end
  -- The expiry is kept in the hash too, so that it only ever moves later (no clock needed).
  local keep_until = string.format('%.0f', math.floor((tonumber(job[3]) + 86400) * 1000))
  local kept = redis.call('HGET', ukey, 'keep_until')
  if not kept or tonumber(kept) < tonumber(keep_until) then
    redis.call('HSET', ukey, 'keep_until', keep_until)
    redis.call('PEXPIREAT', ukey, keep_until)
  end
end

