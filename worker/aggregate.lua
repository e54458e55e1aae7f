-- Record one order in its shard of the shared running average, atomically and at most once per orderId.
-- Every key is the order's shard's (orders/core/shards.py): {orders} with one shard.
--
-- KEYS[1]  seen marker for this orderId  ({orders}:seen:<orderId>)
-- KEYS[2]  totals hash: count, sum_cents, min_cents, max_cents, last100_sum_cents
-- KEYS[3]  list of the latest prices in cents, newest first
-- KEYS[4]  hash product -> count
-- KEYS[5]  hash product -> sum_cents
-- KEYS[6]  counters hash (this script only ever touches `succeeded`)
-- KEYS[7]  recent activity list (JSON entries, newest first), for dashboards
-- KEYS[8]  dead-letter claim of this orderId ({orders}:dead:<orderId>), see claim.lua
-- KEYS[9]  the shard's layout stamp: the number of shards it belongs to (missing = 1)
-- ARGV[1]  price in cents, an integer as a decimal string
-- ARGV[2]  product
-- ARGV[3]  dedupe TTL in seconds
-- ARGV[4]  size of the latest-orders window (100)
-- ARGV[5]  the recent-activity entry for this order, as JSON
-- ARGV[6]  how many recent-activity entries to keep
-- ARGV[7]  how many distinct products to keep apart; the rest are counted under ARGV[8]
-- ARGV[8]  the name the rest are counted under
-- ARGV[9]  the number of shards the caller routes by; another than the stamp's is refused (STALELAYOUT)
--
-- Returns 1 if the order was counted, 0 if its orderId was already seen, -1 if it was claimed for the
-- dead-letter queue (then it is never counted: an order ends counted or dead-lettered, never both).
--
-- Every outcome writes: a duplicate refreshes its marker's TTL, a claimed order its claim's. A WAIT sent
-- after the script (worker/aggregate.py) covers only this connection's own writes; after a script that
-- wrote nothing it would prove nothing about the first copy's write, which another worker made and
-- may not have reached a replica. Written after it, the refresh reaches a replica only behind it.
--
-- Sums stay exact because they never pass through Lua numbers (doubles, exact only below 2^53):
-- the price travels as a string into HINCRBY, which adds 64-bit integers on the server.

local cents = ARGV[1]

-- Validate before the first write: Redis does not roll back a script that fails half-way.
-- (HINCRBY itself takes no leading zeros and no "-0".)
if cents ~= '0' and not string.match(cents, '^%-?[1-9]%d*$') then
    return redis.error_reply('price must be an integer number of cents, got ' .. cents)
end

-- A process still routing by an old layout (the aggregate was re-sharded under it) must not count
-- an order into a shard its marker no longer lives in: refused before any write, and handed back.
if KEYS[9] and (redis.call('GET', KEYS[9]) or '1') ~= ARGV[9] then
    return redis.error_reply('STALELAYOUT shard ' .. KEYS[9] .. ' is laid out for '
        .. (redis.call('GET', KEYS[9]) or '1') .. ' shards, the writer for ' .. ARGV[9])
end

-- EXISTS before EXPIRE: once a script has called a write command, Redis skips the maxmemory check of
-- its later ones (so as not to stop it half-way), and a full Redis must refuse a new order's writes.
if KEYS[8] and redis.call('EXISTS', KEYS[8]) == 1 then
    redis.call('EXPIRE', KEYS[8], ARGV[3])
    return -1
end
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[3])
    return 0
end

-- Many distinct names would grow two hashes without bound (and every dashboard frame with them).
local product = ARGV[2]
local folded = false
local cap = tonumber(ARGV[7] or '0')
if cap > 0 and redis.call('HEXISTS', KEYS[4], product) == 0 and redis.call('HLEN', KEYS[4]) >= cap then
    product, folded = ARGV[8], true
end

-- HINCRBY refuses to pass 2^63 - 1, after the writes before it were made: check every sum first.
-- (A double is within 2048 of a sum near 2^63, far inside the margin below the limit.)
local price = tonumber(cents)
local LIMIT = 9.2e18
local function would_overflow(key, field)
    local current = tonumber(redis.call('HGET', key, field) or '0')
    return math.abs(current + price) > LIMIT
end
if would_overflow(KEYS[2], 'sum_cents') or would_overflow(KEYS[2], 'last100_sum_cents')
        or would_overflow(KEYS[5], product) then
    return redis.error_reply('sum would overflow 64-bit integers; order ' .. KEYS[1] .. ' not counted')
end

redis.call('SET', KEYS[1], '1', 'EX', ARGV[3])

-- "-" .. "0" would be "-0", which HINCRBY rejects; flip the sign as text instead.
local function negated(value)
    if value == '0' then
        return '0'
    elseif string.sub(value, 1, 1) == '-' then
        return string.sub(value, 2)
    end
    return '-' .. value
end

redis.call('HINCRBY', KEYS[2], 'count', 1)
redis.call('HINCRBY', KEYS[2], 'sum_cents', cents)

-- Comparisons only (no arithmetic): exact for any price below 2^53 cents.
local low = redis.call('HGET', KEYS[2], 'min_cents')
if not low or price < tonumber(low) then
    redis.call('HSET', KEYS[2], 'min_cents', cents)
end
local high = redis.call('HGET', KEYS[2], 'max_cents')
if not high or price > tonumber(high) then
    redis.call('HSET', KEYS[2], 'max_cents', cents)
end

-- The window keeps its own running sum: add the newcomer, subtract whatever falls off the end.
-- With several shards an entry carries the server's time in µs ("<cents>:<usec>"): readers merge the
-- shards' windows by it (orders/core/snapshot.py). One shard keeps today's plain cents.
local entry = cents
if ARGV[9] and ARGV[9] ~= '1' then
    local now = redis.call('TIME')
    entry = cents .. ':' .. now[1] .. string.format('%06d', tonumber(now[2]))
end
redis.call('LPUSH', KEYS[3], entry)
redis.call('HINCRBY', KEYS[2], 'last100_sum_cents', cents)
local window = tonumber(ARGV[4])
while redis.call('LLEN', KEYS[3]) > window do
    local dropped = string.match(redis.call('RPOP', KEYS[3]), '^[^:]+')
    redis.call('HINCRBY', KEYS[2], 'last100_sum_cents', negated(dropped))
end

redis.call('HINCRBY', KEYS[4], product, 1)
redis.call('HINCRBY', KEYS[5], product, cents)
redis.call('HINCRBY', KEYS[6], 'succeeded', 1)
if folded then
    redis.call('HINCRBY', KEYS[6], 'products_folded', 1)
end
redis.call('LPUSH', KEYS[7], ARGV[5])
redis.call('LTRIM', KEYS[7], 0, tonumber(ARGV[6]) - 1)
return 1
