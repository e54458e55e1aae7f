-- Acknowledge what the worker finished, then take the next messages off a Celery queue and record
-- them as unacknowledged, in one atomic step and one round trip.
--
-- kombu's Redis transport pops with BRPOP and records the message in its unacked hash with a second
-- command; a worker SIGKILLed between the two loses the message for good. Here the pop and the
-- record cannot be separated, so a dead worker's message is always swept back after the
-- visibility timeout, like any other it held. Acks ride along with the next fetch instead of
-- costing a round trip of their own (worker/transport.py says when that is safe).
--
-- KEYS[1]  the queue (a list; kombu pushes on the left and pops on the right)
-- KEYS[2]  kombu's unacked hash: delivery tag -> JSON [message, exchange, routing key] (kombu's own
--          private format: contract K3 in worker/fast_path.py; kombu's restore reads it back, K4)
-- KEYS[3]  kombu's unacked index: delivery tag scored by delivery time (seconds)
-- ARGV[1]  how many messages to take at most
-- ARGV[2]  "1" to record them as unacknowledged; "0" for a no-ack consumer (replies to control
--          commands: pings, Flower), whose messages nobody acknowledges and must not come back
-- ARGV[3..] delivery tags to acknowledge first
--
-- Returns {queue, message, ...} oldest first, or {} when the queue is empty.

if #ARGV > 2 then
    local tags = {unpack(ARGV, 3)}
    redis.call('HDEL', KEYS[2], unpack(tags))
    redis.call('ZREM', KEYS[3], unpack(tags))
end

local items = redis.call('RPOP', KEYS[1], tonumber(ARGV[1]))
if not items then
    return {}
end
if ARGV[2] ~= '1' then
    table.insert(items, 1, KEYS[1])
    return items
end
local now = redis.call('TIME')
local score = string.format('%d.%06d', now[1], now[2])
local reply = {KEYS[1]}
for _, item in ipairs(items) do
    local properties = cjson.decode(item)['properties']
    local info = properties['delivery_info']
    -- The message goes in verbatim: re-encoding it with cjson could change it ([] vs {}).
    local entry = '[' .. item .. ',' .. cjson.encode(info['exchange']) .. ',' .. cjson.encode(info['routing_key']) .. ']'
    redis.call('HSET', KEYS[2], properties['delivery_tag'], entry)
    redis.call('ZADD', KEYS[3], score, properties['delivery_tag'])
    reply[#reply + 1] = item
end
return reply
