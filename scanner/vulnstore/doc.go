// Package vulnstore is DIVDS's embedded vulnerability database: claircore
// Vulnerabilities and enrichments, per updater, in one bbolt file in the
// state directory. No server, no PostgreSQL.
//
// Writes never touch the live file. A Builder writes a complete new
// database into a temporary file beside it (copying forward what it does
// not replace), syncs it, and renames it over the live one. A reader holds
// the file it opened, so it never sees a half-written database, and a
// kill -9 at any point leaves the previous database as it was; the next
// writer removes the stale temporary file. Writers are serialized by an
// flock on a lock file.
//
// Store.Get implements claircore's datastore.Vulnerability with the
// semantics of claircore's PostgreSQL store: candidates by binary or
// source package name and kind, then the matcher's Query() constraints,
// then optional version-range filtering.
package vulnstore
