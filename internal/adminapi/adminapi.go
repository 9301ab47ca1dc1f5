// Package adminapi holds what the admin handler (idem.Store.AdminHandler)
// and its client (the idem CLI's -url) must agree on, so that the two
// cannot drift apart.
package adminapi

const (
	// MutationHeader must be set, to MutationValue, on every request that
	// changes the store (POST /gc, POST /delete). A browser cannot send it
	// cross-origin without a preflight that the handler never allows, so
	// a web page cannot make an operator's browser delete a key.
	MutationHeader = "Idem-Admin"
	MutationValue  = "mutate"

	// TokenEnv names the environment variable the CLI takes a bearer
	// token from (AdminOptions.Token), when -token is not given.
	TokenEnv = "IDEM_ADMIN_TOKEN"
)
