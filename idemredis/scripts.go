package idemredis

import (
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Every entry is one Redis string: a header, then the value.
//
//	owner,lease,fence,expires,watched;value
//
// owner names the owner of an in-progress entry (0 once finished), lease
// is the end of its lease in Unix milliseconds of the server's clock,
// fence the last token a script gave out for the key (0 if none), expires
// the entry's own expiry (so that a script can put an entry back exactly
// as it was), and watched 1 if a duplicate on another instance waits for
// the entry: its completion or release is then published on the channel
// prefix + "done" (see watch.go). Unwatched entries publish nothing, so
// that the common path pays nothing for it.
//
// Tokens are the server's time in microseconds, so they grow across a
// release, deletion or expiry too. A claim made by the claim script is
// owned by its token (at least fence+1, in case the server's clock stepped
// back); Lua's numbers hold such a token exactly (it is under 2^53) but
// print it in exponent form, so it is built from TIME's strings. A quick
// claim (quick.go) is owned by a random number of 17 or more digits
// instead, which scripts tell apart by its length.
//
// Each operation is a script, so Redis runs it atomically; time comes from
// the server (TIME), never from the instances. The server's work bounds
// throughput, and in a script each command costs several times what it
// costs alone, so the common paths take one command per key — a claim of
// a new key is one SET NX GET (usually not even in a script: quick.go), a
// completion one SET XX GET (undone in the rare case that the key is not
// the caller's) — and every script takes a batch of keys, the same
// operation for each with its own arguments, and returns a reply per key
// (see pipeliner).

// op is one operation's script and the number of arguments it takes per
// key.
type op struct {
	name   string
	script *redis.Script
	args   int
}

// batchScript wraps the body of a function f(k, a), which runs the
// operation on key k with its arguments ARGV[a+1..a+args], in a loop over
// the keys of a call. setup, if any, runs once per call before the loop.
func batchScript(name string, args int, body string, setup ...string) op {
	return op{name: name, args: args, script: redis.NewScript(fmt.Sprintf(`
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local us = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
local function parse(cur)
  local o, l, f, e, w, at = string.match(cur, '^(%%d+),(%%d+),(%%d+),(%%d+),(%%d);()')
  return o, tonumber(l), f, e, w, at
end
-- Something else may have written under the prefix: a string parse
-- cannot read, or another type, on which commands fail (WRONGTYPE). Such
-- a key gets an error of its own, malformed or the command's (redis.pcall
-- returns it), so that the other keys of the call get their replies; to
-- an owner's operation it is a key the caller no longer owns (0).
local malformed = {err = 'malformed entry'}
-- notify tells the watchers of key k that it is no longer in progress.
local function notify(k)
  redis.call('PUBLISH', string.match(k, '^(.-){') .. 'done', k)
end
-- later(d) is the time d milliseconds from now, as a string; the keys of
-- a call mostly share their durations, so each is computed once.
local laters = {}
local function later(d)
  local v = laters[d]
  if not v then
    v = tostring(ms + tonumber(d))
    laters[d] = v
  end
  return v
end
%s
local function f(k, a)
%s
end
local out = {}
for i = 1, #KEYS do
  out[i] = f(KEYS[i], (i - 1) * %d)
end
return out
`, strings.Join(setup, "\n"), body, args))}
}

// claimOp: value, lease ms, ttl ms, takeover ("1"), has stale ("1"),
// stale. Replies {token or "0", previous owner, previous lapsed (0/1),
// previous value or nil, the server's time in microseconds}.
var claimOp = batchScript("claim", 6, `
  local lease, expires = later(ARGV[a+2]), later(ARGV[a+3])
  local h = heads[lease .. expires]
  if not h then
    h = us .. ',' .. lease .. ',' .. us .. ',' .. expires .. ',0;'
    heads[lease .. expires] = h
  end
  local cur = redis.pcall('SET', k, h .. ARGV[a+1], 'PXAT', expires, 'NX', 'GET')
  if not cur then
    return claimed -- a new key: the common case
  end
  if type(cur) == 'table' then return cur end
  local token = us
  local prev, l, fence, e, w, at = parse(cur)
  if not prev then return malformed end
  local old = string.sub(cur, at)
  local lapsed = 0
  if prev ~= '0' and l <= ms then lapsed = 1 end
  local take = (lapsed == 1 and ARGV[a+4] == '1') or
    (ARGV[a+5] == '1' and (prev == '0' or lapsed == 1) and old == ARGV[a+6])
  if not take then
    return {'0', prev, lapsed, old, us}
  end
  if tonumber(token) <= tonumber(fence) then token = string.format('%.0f', tonumber(fence) + 1) end
  redis.call('SET', k, token .. ',' .. lease .. ',' .. token .. ',' .. expires .. ',' .. w .. ';' .. ARGV[a+1], 'PXAT', expires)
  return {token, prev, lapsed, old, us}`,
	`local heads, claimed = {}, {us, '0', 0, false, us}`)

// renewOp: owner, lease ms. Replies 1, or 0 if not the owner. The entry
// is kept at least as long as the lease.
var renewOp = batchScript("renew", 2, `
  local cur = redis.pcall('GET', k)
  if type(cur) ~= 'string' then return 0 end
  local o, l, fence, e, w, at = parse(cur)
  if o ~= ARGV[a+1] then return 0 end
  local lease = later(ARGV[a+2])
  if tonumber(e) < tonumber(lease) then e = lease end
  redis.call('SET', k, o .. ',' .. lease .. ',' .. fence .. ',' .. e .. ',' .. w .. ';' .. string.sub(cur, at), 'PXAT', e)
  return 1`)

// completeOp: owner, value, ttl ms. Replies 1, or 0 if not the owner.
// The finished entry's fence is the owner's token, if the owner is one.
var completeOp = batchScript("complete", 3, `
  local expires = later(ARGV[a+3])
  local fence = ARGV[a+1]
  if #fence > 16 then fence = '0' end
  local cur = redis.pcall('SET', k, '0,0,' .. fence .. ',' .. expires .. ',0;' .. ARGV[a+2], 'PXAT', expires, 'XX', 'GET')
  if type(cur) ~= 'string' then return 0 end -- gone, or another type (the SET did not run)
  -- The owner's entry starts with the owner and a comma (see parse,
  -- which costs more than all the rest: only the rare path calls it).
  local o = ARGV[a+1]
  if string.sub(cur, 1, #o + 1) ~= o .. ',' then
    -- Not the caller's: put it back. An entry idem did not write keeps
    -- the completion's expiry, since the SET replaced its own.
    local _, _, _, e = parse(cur)
    redis.call('SET', k, cur, 'PXAT', e or expires)
    return 0
  end
  -- The watched flag is the digit before the header's end.
  if string.byte(cur, string.find(cur, ';', #o + 2, true) - 1) == 49 then notify(k) end
  return 1`)

// releaseOp: owner. Replies 1, or 0 if not the owner.
var releaseOp = batchScript("release", 1, `
  local cur = redis.pcall('GET', k)
  if type(cur) ~= 'string' then return 0 end
  local o, l, fence, e, w = parse(cur)
  if o ~= ARGV[a+1] then return 0 end
  redis.call('DEL', k)
  if w == '1' then notify(k) end
  return 1`)

// watchOp: no arguments. Marks an in-progress entry watched and replies
// 1, or replies 0 if the key holds no in-progress entry.
var watchOp = batchScript("watch", 0, `
  local cur = redis.pcall('GET', k)
  if not cur then return 0 end
  if type(cur) == 'table' then return cur end
  local o, l, fence, e, w, at = parse(cur)
  if not o then return malformed end
  if o == '0' then return 0 end
  if w == '0' then
    redis.call('SET', k, o .. ',' .. l .. ',' .. fence .. ',' .. e .. ',1;' .. string.sub(cur, at), 'PXAT', e)
  end
  return 1`)

// getOp: no arguments. Replies {owner, lapsed (0/1), value}, or nil.
var getOp = batchScript("get", 0, `
  local cur = redis.pcall('GET', k)
  if not cur then return false end
  if type(cur) == 'table' then return cur end
  local o, l, fence, e, w, at = parse(cur)
  if not o then return malformed end
  local lapsed = 0
  if o ~= '0' and l <= ms then lapsed = 1 end
  return {o, lapsed, string.sub(cur, at)}`)
