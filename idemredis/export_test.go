package idemredis

// ScriptClaimsOnly makes b claim keys with the claim script only, as on a
// Cluster.
func ScriptClaimsOnly(b *Backend) { b.quick = false }
