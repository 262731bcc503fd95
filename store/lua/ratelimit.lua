-- Admission in one call: take tokens from every bucket, all or nothing, and check ceilings
-- (counters read from hash fields, e.g. the backlog hash) against their limits.
--
-- A bucket is a hash {tk = tokens, ts = time of tk}; it refills at `rate` tokens per second
-- up to `capacity`, and expires once it would be full again (a missing bucket is full).
-- A ceiling refuses when the sum of its fields plus what the request adds passes its limit;
-- it is only read here (the counting scripts keep the counters).
--
-- KEYS      the bucket hashes, then one hash per ceiling
-- ARGV[1]   now (epoch seconds; clock steps backwards count as no time passing)
-- ARGV[2]   number of buckets nb
-- ARGV[3]   number of ceilings nc
-- ARGV[4]   1: take the tokens even if short (a bucket may go down to -capacity), 0: refuse
-- then per bucket:   rate (tokens/s), capacity, cost
-- then per ceiling:  limit, add, number of fields nf, field 1 .. field nf
-- Returns {allowed (0|1), refused (0, or the 1-based position of the refusing bucket, then
-- ceiling), retry_after (s, string), then per bucket: tokens left (string), seconds until
-- full (string), then per ceiling: the current count}.
local now = tonumber(ARGV[1])
local nb, nc, force = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local tokens, stamps, rates, caps, costs = {}, {}, {}, {}, {}
local refused, wait = 0, 0
local a = 5
for i = 1, nb do
  local rate, cap, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  local h = redis.call('HMGET', KEYS[i], 'tk', 'ts')
  local tk, ts = tonumber(h[1]), tonumber(h[2])
  if not tk or not ts then
    tk, ts = cap, now
  end
  local elapsed = math.max(0, now - ts)
  tk = math.min(cap, tk + elapsed * rate)
  tokens[i], rates[i], caps[i], costs[i] = tk, rate, cap, cost
  if tk < cost and not force then
    local w = (cost - tk) / rate
    if refused == 0 then refused = i end
    if w > wait then wait = w end
  end
end
local counts = {}
for j = 1, nc do
  local limit, add, nf = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local fields = {}
  for f = 1, nf do fields[f] = ARGV[a + 2 + f] end
  a = a + 3 + nf
  local sum = 0
  if nf > 0 then
    for _, v in ipairs(redis.call('HMGET', KEYS[nb + j], unpack(fields))) do
      sum = sum + math.max(0, tonumber(v) or 0)
    end
  end
  counts[j] = sum
  if refused == 0 and add > 0 and sum + add > limit then
    refused = nb + j
  end
end
local allowed = refused == 0
local out = {allowed and 1 or 0, refused, tostring(wait)}
for i = 1, nb do
  local tk = tokens[i]
  if allowed then
    tk = math.max(-caps[i], tk - costs[i])
    local full_in = (caps[i] - tk) / rates[i]
    redis.call('HSET', KEYS[i], 'tk', tostring(tk), 'ts', tostring(now))
    redis.call('PEXPIRE', KEYS[i], math.ceil(full_in * 1000) + 1000)
  end
  out[#out + 1] = tostring(tk)
  out[#out + 1] = tostring((caps[i] - tk) / rates[i])
end
for j = 1, nc do
  out[#out + 1] = counts[j]
end
return out
