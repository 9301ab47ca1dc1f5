package idemredis

import "github.com/redis/go-redis/v9"

// Every entry is a hash of four fields:
//
//	o  owner token of an in-progress entry, "0" once finished
//	l  end of the owner's lease, Unix milliseconds of the server's clock
//	f  the last token given out for the key, so that tokens only grow
//	v  the value
//
// Each operation is one script, so Redis runs it atomically; time comes
// from the server (TIME), never from the instances. Numbers are written
// with %.0f: Lua's own formatting would turn tokens into exponents.

// now is the server's clock in milliseconds (ms) and microseconds (us).
const now = `
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
`

// claimScript: KEYS[1] the entry; ARGV value, lease ms, ttl ms, takeover
// ("1"), has stale ("1"), stale. Returns {token or "0", previous owner,
// previous lapsed (0/1), previous value or nil}.
var claimScript = redis.NewScript(now + `
local cur = redis.call('HMGET', KEYS[1], 'o', 'l', 'v', 'f')
local prev, lapsed = '0', 0
if cur[3] then
  prev = cur[1]
  if prev ~= '0' and tonumber(cur[2]) <= ms then lapsed = 1 end
  local take = (lapsed == 1 and ARGV[4] == '1') or
    (ARGV[5] == '1' and (prev == '0' or lapsed == 1) and cur[3] == ARGV[6])
  if not take then
    return {'0', prev, lapsed, cur[3]}
  end
end
local token = us
if cur[4] and tonumber(cur[4]) >= token then token = tonumber(cur[4]) + 1 end
local ts = string.format('%.0f', token)
redis.call('HSET', KEYS[1], 'o', ts, 'f', ts, 'l', string.format('%.0f', ms + tonumber(ARGV[2])), 'v', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {ts, prev, lapsed, cur[3] or false}
`)

// renewScript: KEYS[1]; ARGV owner, lease ms. Returns 1, or 0 if not the
// owner. The entry is kept at least as long as the lease.
var renewScript = redis.NewScript(now + `
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then return 0 end
local lease = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'l', string.format('%.0f', ms + lease))
if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 1
`)

// completeScript: KEYS[1]; ARGV owner, value, ttl ms. Returns 1, or 0 if
// not the owner.
var completeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'o', '0', 'v', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// releaseScript: KEYS[1]; ARGV owner. Returns 1, or 0 if not the owner.
var releaseScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// getScript: KEYS[1]. Returns {owner, lapsed (0/1), value}, or nil.
var getScript = redis.NewScript(now + `
local cur = redis.call('HMGET', KEYS[1], 'o', 'l', 'v')
if not cur[3] then return false end
local lapsed = 0
if cur[1] ~= '0' and tonumber(cur[2]) <= ms then lapsed = 1 end
return {cur[1], lapsed, cur[3]}
`)
