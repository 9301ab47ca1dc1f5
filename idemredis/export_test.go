package idemredis

// ScriptClaimsOnly makes b claim keys with the claim script only, as on a
// Cluster.
func ScriptClaimsOnly(b *Backend) { b.quick = false }

// RedisKey is the Redis key that holds key's entry.
func RedisKey(b *Backend, key []byte) string { return b.redisKey(key) }

// SendTogether runs the operation named name on each of keys, key i with
// args[i], in one pipeline — one script call, as the calls of concurrent
// callers are joined — and returns each call's reply and error.
func SendTogether(b *Backend, name string, keys [][]byte, args [][]any) ([]any, []error) {
	ops := map[string]*op{}
	for _, o := range []*op{&claimOp, &renewOp, &completeOp, &releaseOp, &watchOp, &getOp} {
		ops[o.name] = o
	}
	calls := make([]*call, len(keys))
	for i, k := range keys {
		calls[i] = &call{op: ops[name], key: b.redisKey(k), args: args[i], done: make(chan struct{}, 1)}
	}
	b.pipe.send(calls)
	replies, errs := make([]any, len(calls)), make([]error, len(calls))
	for i, c := range calls {
		<-c.done
		replies[i], errs[i] = c.reply, c.err
	}
	return replies, errs
}
