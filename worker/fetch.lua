-- Take the next message off a Celery queue and record it as unacknowledged, in one atomic step.
--
-- kombu's Redis transport pops with BRPOP and records the message in its unacked hash with a second
-- command; a worker SIGKILLed between the two loses the message for good. Here the pop and the
-- record cannot be separated, so a dead worker's message is always swept back after the
-- visibility timeout, like any other it held.
--
-- KEYS[1]  the queue (a list; kombu pushes on the left and pops on the right)
-- KEYS[2]  kombu's unacked hash: delivery tag -> JSON [message, exchange, routing key]
-- KEYS[3]  kombu's unacked index: delivery tag scored by delivery time (seconds)
--
-- Returns {queue, message} like BRPOP, or nil when the queue is empty.

local item = redis.call('RPOP', KEYS[1])
if not item then
    return nil
end
local properties = cjson.decode(item)['properties']
local info = properties['delivery_info']
local now = redis.call('TIME')
-- The message goes in verbatim: re-encoding it with cjson could change it ([] vs {}).
local entry = '[' .. item .. ',' .. cjson.encode(info['exchange']) .. ',' .. cjson.encode(info['routing_key']) .. ']'
redis.call('HSET', KEYS[2], properties['delivery_tag'], entry)
redis.call('ZADD', KEYS[3], string.format('%d.%06d', now[1], now[2]), properties['delivery_tag'])
return {KEYS[1], item}
