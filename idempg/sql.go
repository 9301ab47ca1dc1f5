package idempg

import "strings"

// The table, one row a record:
//
//	key         bytea        the store's key (its primary key)
//	value       bytea        the store's record
//	owner       bigint       the owner of an in-progress entry, 0 once finished
//	lease_until timestamptz  the end of an in-progress entry's lease
//	expires_at  timestamptz  when the row is dead: every statement treats it as gone
//	watched     boolean      a duplicate on another instance waits for it: its
//	                         completion or release is notified (see watch.go)
//	nonce       bigint       drawn by the claimer, so that a claim whose reply
//	                         was lost can be given back
//
// Every time is the server's (now(), one per statement), never an
// instance's. Owners come from the table's sequence: they increase from
// owner to owner of a key, across deletions and expiries, and are the
// claims' fencing tokens.

// statements is the SQL of a backend, built once for its table.
type statements struct {
	schema, claim, giveBack, renew, complete, release, get, delete, scan, expire, watch string
}

func newStatements(table, channel string) statements {
	seq := table + "_owner"
	idx := table[strings.LastIndex(table, ".")+1:] + "_expires"
	r := strings.NewReplacer("{T}", table, "{S}", seq, "{I}", idx)
	q := func(s string) string { return r.Replace(s) }
	// A row is alive while expires_at > now(); lapsed while in progress
	// past its lease.
	const lapsed = `(owner <> 0 AND lease_until <= now())`
	return statements{
		schema: q(`
CREATE TABLE IF NOT EXISTS {T} (
	key bytea PRIMARY KEY,
	value bytea NOT NULL,
	owner bigint NOT NULL,
	lease_until timestamptz,
	expires_at timestamptz NOT NULL,
	watched boolean NOT NULL DEFAULT false,
	nonce bigint NOT NULL DEFAULT 0
);
CREATE SEQUENCE IF NOT EXISTS {S};
CREATE INDEX IF NOT EXISTS {I} ON {T} (expires_at);`),

		// $1 key, $2 value, $3 lease µs, $4 ttl µs, $5 takeover, $6 has
		// stale, $7 stale, $8 nonce, $9 volatile. Returns the new owner
		// (NULL if refused) and the entry that was there (NULL owner if
		// none). A volatile claim need not survive a crash of the server
		// (ClaimRequest.Volatile: the key is then new again, as the scope's
		// OrphanRerun says), so its commit does not wait for the disk
		// (synchronous_commit off, for this statement's transaction only).
		claim: q(`
WITH cfg AS (
	SELECT set_config('synchronous_commit', CASE WHEN $9 THEN 'off' ELSE current_setting('synchronous_commit') END, true)
), old AS (
	SELECT value, owner, ` + lapsed + ` AS lapsed FROM {T}
	WHERE key = $1 AND expires_at > now() FOR UPDATE
), claimed AS (
	INSERT INTO {T} AS cur (key, value, owner, lease_until, expires_at, watched, nonce)
	VALUES ($1, $2, nextval('{S}'), now() + $3 * interval '1 microsecond', now() + $4 * interval '1 microsecond', false, $8)
	ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, owner = EXCLUDED.owner,
		lease_until = EXCLUDED.lease_until, expires_at = EXCLUDED.expires_at,
		watched = false, nonce = EXCLUDED.nonce
	WHERE cur.expires_at <= now()
		OR ($5 AND cur.owner <> 0 AND cur.lease_until <= now())
		OR ($6 AND (cur.owner = 0 OR cur.lease_until <= now()) AND cur.value = $7)
	RETURNING cur.owner
)
SELECT (SELECT owner FROM claimed), old.value, old.owner, old.lapsed
FROM (SELECT 1 FROM cfg) AS one LEFT JOIN old ON true`),

		// $1 key, $2 nonce: the claim of a caller that left.
		giveBack: q(`DELETE FROM {T} WHERE key = $1 AND nonce = $2 AND owner <> 0`),

		// The statements that change an owner's entry reply the rows they
		// changed and the notifications they sent. A claim starts
		// unwatched; a watch marks it, and its completion or release
		// reads the mark as it is when the row is changed (RETURNING).

		// $1 key, $2 owner, $3 lease µs. The row lives at least as long as
		// the lease.
		renew: q(`
WITH u AS (
	UPDATE {T} SET lease_until = now() + $3 * interval '1 microsecond',
		expires_at = greatest(expires_at, now() + $3 * interval '1 microsecond')
	WHERE key = $1 AND owner = $2 AND owner <> 0 AND expires_at > now() RETURNING 1
) SELECT count(*), 0 FROM u`),

		// $1 key, $2 owner, $3 value, $4 ttl µs, $5 channel.
		complete: q(`
WITH u AS (
	UPDATE {T} SET value = $3, owner = 0, lease_until = NULL,
		expires_at = now() + $4 * interval '1 microsecond'
	WHERE key = $1 AND owner = $2 AND owner <> 0 AND expires_at > now() RETURNING watched
), n AS (
	SELECT pg_notify($5, encode($1, 'hex')) FROM u WHERE u.watched
) SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)`),

		// $1 key, $2 owner, $3 channel.
		release: q(`
WITH d AS (
	DELETE FROM {T} WHERE key = $1 AND owner = $2 AND owner <> 0 AND expires_at > now() RETURNING watched
), n AS (
	SELECT pg_notify($3, encode($1, 'hex')) FROM d WHERE d.watched
) SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM n)`),

		get: q(`SELECT value, owner, ` + lapsed + ` FROM {T} WHERE key = $1 AND expires_at > now()`),

		delete: q(`DELETE FROM {T} WHERE key = $1`),

		// $1 prefix, $2 the least key after every key with it (NULL: none).
		scan: q(`
SELECT key, value, owner, ` + lapsed + ` FROM {T}
WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2) AND expires_at > now()
ORDER BY key`),

		// $1 limit. Rows a claim holds locked are skipped, never waited for.
		expire: q(`
WITH d AS (
	DELETE FROM {T} WHERE key IN (
		SELECT key FROM {T} WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED
	) AND expires_at <= now()
	RETURNING length(key) + length(value) AS size
) SELECT count(*), coalesce(sum(size), 0) FROM d`),

		// $1 key. Replies 1 if the key is in progress (now marked watched).
		watch: q(`
WITH u AS (
	UPDATE {T} SET watched = true WHERE key = $1 AND owner <> 0 AND expires_at > now() RETURNING 1
) SELECT count(*) FROM u`),
	}
}
