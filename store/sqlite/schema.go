package sqlite

import (
	"database/sql"
	"fmt"
	"strings"
	"time"

	"cpis/store"
)

// schemaVersion is the layout this code reads and writes (PRAGMA
// user_version). migrations[v] takes a database from version v to v+1.
const schemaVersion = 15

// The layout (version 2). resources holds each record's current version
// and its derived record; history holds the versions before it. Both are
// rowid tables with the blobs last: a plan and its Flag (about 2 KB) fit in
// one page, where a WITHOUT ROWID row of that size spilled into overflow
// pages.
var migrations = [][]string{
	// 0 → 1: the first layout.
	{
		`CREATE TABLE resources (
			type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
			updated INTEGER NOT NULL, deleted INTEGER NOT NULL,
			owner TEXT NOT NULL, subject TEXT NOT NULL, plan_end INTEGER,
			body BLOB, ended BLOB, ends INTEGER,
			dtype TEXT, dbody BLOB, dended BLOB, dends INTEGER,
			PRIMARY KEY (type, id)) WITHOUT ROWID`,
		`CREATE TABLE history (
			type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
			updated INTEGER NOT NULL, deleted INTEGER NOT NULL,
			owner TEXT NOT NULL, subject TEXT NOT NULL, plan_end INTEGER,
			body BLOB, ended BLOB, ends INTEGER,
			dtype TEXT, dbody BLOB, dended BLOB, dends INTEGER,
			PRIMARY KEY (type, id, version)) WITHOUT ROWID`,
		`CREATE TABLE keys (
			type TEXT NOT NULL, value TEXT NOT NULL, id TEXT NOT NULL,
			PRIMARY KEY (type, value)) WITHOUT ROWID`,
		`CREATE INDEX keys_id ON keys(type, id)`,
		`CREATE TABLE audit (
			seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
			recorded INTEGER NOT NULL, subject TEXT NOT NULL, agent TEXT NOT NULL,
			notify INTEGER NOT NULL, body BLOB NOT NULL)`,
		`CREATE INDEX audit_subject ON audit(subject, recorded)`,
		`CREATE INDEX audit_recorded ON audit(recorded)`,
		`CREATE TABLE audit_owner (
			owner TEXT NOT NULL, seq INTEGER NOT NULL REFERENCES audit(seq) ON DELETE CASCADE,
			PRIMARY KEY (owner, seq)) WITHOUT ROWID`,
		`CREATE INDEX audit_owner_seq ON audit_owner(seq)`,
	},
	// 1 → 2: rowid tables, history of previous versions only, and no stored
	// inactive variant of a Flag (it is derived when served).
	{
		`DROP INDEX IF EXISTS resources_subject`,
		`DROP INDEX IF EXISTS resources_id`,
		`DROP INDEX IF EXISTS resources_owner`,
		`DROP INDEX IF EXISTS resources_derived`,
		`DROP INDEX IF EXISTS resources_end`,
		`ALTER TABLE resources RENAME TO resources_v1`,
		`ALTER TABLE history RENAME TO history_v1`,
		`CREATE TABLE resources (
			rid INTEGER PRIMARY KEY,
			type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
			updated INTEGER NOT NULL, deleted INTEGER NOT NULL,
			owner TEXT NOT NULL, subject TEXT NOT NULL, plan_end INTEGER, ends INTEGER,
			dtype TEXT, dends INTEGER, body BLOB, dbody BLOB,
			UNIQUE (type, id))`,
		`CREATE TABLE history (
			rid INTEGER PRIMARY KEY,
			type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
			updated INTEGER NOT NULL, deleted INTEGER NOT NULL,
			owner TEXT NOT NULL, subject TEXT NOT NULL, plan_end INTEGER, ends INTEGER,
			dtype TEXT, dends INTEGER, body BLOB, dbody BLOB,
			UNIQUE (type, id, version))`,
		`INSERT INTO resources(` + colsV2 + `) SELECT ` + colsV2 + ` FROM resources_v1`,
		`INSERT INTO history(` + colsV2 + `) SELECT ` + prefixed("h", colsV2) + ` FROM history_v1 h
			JOIN resources_v1 r ON r.type = h.type AND r.id = h.id WHERE h.version < r.version`,
		`DROP TABLE resources_v1`,
		`DROP TABLE history_v1`,
		// Full indexes: a partial one cannot serve subject = ?, and SQLite
		// re-plans a statement whose parameter decides a partial index.
		`CREATE INDEX resources_subject ON resources(subject)`,
		`CREATE INDEX resources_id ON resources(id)`,
		`CREATE INDEX resources_owner ON resources(owner, id)`,
		`CREATE INDEX resources_derived ON resources(dtype, id)`,
		`CREATE INDEX resources_end ON resources(plan_end)`,
	},
	// 2 → 3: identifier keys are unique per managing organisation (the
	// caller now scopes them: "ODS|system|value"); an access record carries
	// its owners itself, and audit_owner indexes only notifying records, by
	// time, so a local authority's feed is counted from the index alone.
	{
		`UPDATE keys SET value = (SELECT r.owner FROM resources r WHERE r.type = keys.type AND r.id = keys.id) || '|' || value
			WHERE EXISTS (SELECT 1 FROM resources r WHERE r.type = keys.type AND r.id = keys.id)`,
		`ALTER TABLE audit ADD COLUMN owners TEXT NOT NULL DEFAULT ''`,
		`UPDATE audit SET owners = COALESCE((SELECT group_concat(owner, ' ') FROM (SELECT owner FROM audit_owner o WHERE o.seq = audit.seq ORDER BY owner)), '')`,
		`DELETE FROM audit_owner WHERE seq IN (SELECT seq FROM audit WHERE notify = 0)`,
		`ALTER TABLE audit_owner ADD COLUMN recorded INTEGER NOT NULL DEFAULT 0`,
		`UPDATE audit_owner SET recorded = (SELECT a.recorded FROM audit a WHERE a.seq = audit_owner.seq)`,
		`CREATE INDEX audit_owner_recorded ON audit_owner(owner, recorded)`,
	},
	// 3 → 4: fewer indexes on the path every audited read writes. The
	// AuditEvent id (a server-made UUID) needs no unique index, and the feed
	// index needs no index by sequence: it has no foreign key to cascade,
	// the purge deletes its rows by key. The sequence carries over, so a
	// feed cursor never sees a number again.
	{
		`CREATE TABLE audit_v4 (
			seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL,
			recorded INTEGER NOT NULL, subject TEXT NOT NULL, agent TEXT NOT NULL,
			notify INTEGER NOT NULL, owners TEXT NOT NULL DEFAULT '', body BLOB NOT NULL)`,
		`INSERT INTO audit_v4(seq, id, recorded, subject, agent, notify, owners, body)
			SELECT seq, id, recorded, subject, agent, notify, owners, body FROM audit`,
		`DELETE FROM sqlite_sequence WHERE name = 'audit_v4'`,
		`INSERT INTO sqlite_sequence(name, seq) SELECT 'audit_v4', seq FROM sqlite_sequence WHERE name = 'audit'`,
		`CREATE TABLE audit_owner_v4 (
			owner TEXT NOT NULL, seq INTEGER NOT NULL, recorded INTEGER NOT NULL,
			PRIMARY KEY (owner, seq)) WITHOUT ROWID`,
		`INSERT INTO audit_owner_v4(owner, seq, recorded) SELECT owner, seq, recorded FROM audit_owner`,
		`DROP TABLE audit_owner`,
		`DROP TABLE audit`,
		`ALTER TABLE audit_v4 RENAME TO audit`,
		`ALTER TABLE audit_owner_v4 RENAME TO audit_owner`,
		`CREATE INDEX audit_subject ON audit(subject, recorded)`,
		`CREATE INDEX audit_recorded ON audit(recorded)`,
		`CREATE INDEX audit_owner_recorded ON audit_owner(owner, recorded)`,
	},
	// 4 → 5: an access that showed more than one local authority's plans
	// keeps, per authority, the AuditEvent that authority is served (its
	// own plans only). NULL for every other access, so it costs them nothing.
	{
		`ALTER TABLE audit ADD COLUMN views BLOB`,
	},
	// 5 → 6: facts about the store itself: its identity (see identity.go)
	// and the readiness probe's heartbeat.
	{
		`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID`,
	},
	// 6 → 7: the access history reads what it needs to choose the accesses
	// it shows (time, who, which authorities) from audit_subject alone, in
	// order, and only the bodies of the 25 shown from the table: the index
	// holds those columns (about 60 bytes an access more). Built once, at
	// the first start of this release: seconds per million accesses.
	{
		`DROP INDEX audit_subject`,
		`CREATE INDEX audit_subject ON audit(subject, recorded, seq, notify, agent, owners, id)`,
	},
	// 7 → 8: what changed since. A local authority's records by time (its
	// _lastUpdated searches and _sort=_lastUpdated pages) and its type-level
	// _history, both tables read from a keyset position. The Flag search by
	// NHS number keeps resources_subject (checked by plan_test.go).
	{
		`CREATE INDEX resources_owner_updated ON resources(owner, updated, id)`,
		`CREATE INDEX history_owner_updated ON history(owner, type, updated, id, version)`,
	},
	// 8 → 9: local authorities' notification subscriptions and their
	// outboxes (see subscriptions.go).
	{
		`CREATE TABLE subscriptions (
			id TEXT PRIMARY KEY, owner TEXT NOT NULL, version INTEGER NOT NULL,
			updated INTEGER NOT NULL, start INTEGER NOT NULL, status TEXT NOT NULL,
			cursor TEXT NOT NULL DEFAULT '', events INTEGER NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0,
			failures INTEGER NOT NULL DEFAULT 0, failing_since INTEGER, next_attempt INTEGER, last_sent INTEGER,
			error TEXT NOT NULL DEFAULT '', holder TEXT NOT NULL DEFAULT '', epoch INTEGER NOT NULL DEFAULT 0,
			lease_until INTEGER, body BLOB NOT NULL) WITHOUT ROWID`,
		`CREATE INDEX subscriptions_owner ON subscriptions(owner, id)`,
		`CREATE TABLE sub_events (
			sub TEXT NOT NULL, number INTEGER NOT NULL, seq INTEGER NOT NULL, recorded INTEGER NOT NULL,
			PRIMARY KEY (sub, number)) WITHOUT ROWID`,
	},
	// 9 → 10: bulk export jobs (export.go); their files are under
	// <data dir>/exports/<id>/.
	{
		`CREATE TABLE exports (id TEXT PRIMARY KEY, owner TEXT NOT NULL, state TEXT NOT NULL,
			beat INTEGER NOT NULL, expires INTEGER NOT NULL, job BLOB NOT NULL) WITHOUT ROWID`,
		`CREATE INDEX exports_owner ON exports(owner, state)`,
		`CREATE INDEX exports_expires ON exports(expires)`,
	},
	// 10 → 11: an LA's deleted records (tombstones), for the data-quality
	// report's NHS-number corrections (store.DeletedLister): a partial
	// index, holding only tombstones, so it costs live records nothing.
	{
		`CREATE INDEX resources_deleted ON resources(owner, id) WHERE deleted = 1`,
	},
	// 11 → 12: a subscription's event keeps its access's id, so an id-only
	// or empty notification reads no access record ('' for events numbered
	// before: those are read as before).
	{
		`ALTER TABLE sub_events ADD COLUMN aid TEXT NOT NULL DEFAULT ''`,
	},
	// 12 → 13: a record's period start (store.Record.Start), the key of
	// _sort=date: Unix milliseconds, NULL for none. Added to both tables,
	// filled from the stored bodies (plain JSON) by store.PeriodStart in
	// the migration's own transaction (goStep), and indexed for an LA's
	// records in that order. A plan's Flag shares its row, so its start.
	{
		`ALTER TABLE resources ADD COLUMN start INTEGER`,
		`ALTER TABLE history ADD COLUMN start INTEGER`,
		goStep("backfill-start"),
		`CREATE INDEX resources_owner_start ON resources(owner, start, id)`,
	},
	// 13 → 14: a subscription's numbered events in pages (subpage.go), one
	// row per run of numbers instead of one per event; the events held are
	// packed into pages by packSubEventRows.
	{
		`CREATE TABLE sub_pages (sub TEXT NOT NULL, last INTEGER NOT NULL, first INTEGER NOT NULL, events BLOB NOT NULL,
			PRIMARY KEY (sub, last)) WITHOUT ROWID`,
		goStep("pack-sub-events"),
		`DROP TABLE sub_events`,
	},
	// 14 → 15: no change of layout. Access-record bodies written from
	// here on may be Zstandard frames (packedZstd, audit.go), which a
	// server of schema 14 would take for JSON: it refuses schema 15.
	{},
}

// colsV2 are the columns of layout 2, which migration 1 → 2 copies.
const colsV2 = `type, id, version, updated, deleted, owner, subject, plan_end, ends, dtype, dends, body, dbody`

// goStepPrefix marks a migration step done in Go (goSteps), inside the
// migration's transaction like its statements.
const goStepPrefix = "-- go step: "

func goStep(name string) string { return goStepPrefix + name }

// goSteps are the migration steps done in Go, by name.
var goSteps = map[string]func(tx *sql.Tx) error{
	"backfill-start":  backfillStart,
	"pack-sub-events": packSubEventRows,
}

// backfillStart sets the start of every stored version from its body, in
// batches by rowid (the bodies of resources and history are the JSON as
// served). Bodies with no period.start (Organizations, tombstones) keep
// NULL.
func backfillStart(tx *sql.Tx) error {
	const batch = 1000
	for _, table := range []string{"resources", "history"} {
		upd, err := tx.Prepare(`UPDATE ` + table + ` SET start = ? WHERE rid = ?`)
		if err != nil {
			return err
		}
		defer upd.Close()
		type found struct {
			rid   int64
			start time.Time
		}
		for last := int64(-1); ; {
			rows, err := tx.Query(`SELECT rid, body FROM `+table+` WHERE rid > ? AND body IS NOT NULL ORDER BY rid LIMIT ?`, last, batch)
			if err != nil {
				return err
			}
			var page []found
			for rows.Next() {
				var f found
				var body []byte
				if err := rows.Scan(&f.rid, &body); err != nil {
					rows.Close()
					return err
				}
				f.start = store.PeriodStart(body)
				page = append(page, f)
			}
			if err := rows.Close(); err != nil {
				return err
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if len(page) == 0 {
				break
			}
			for _, f := range page {
				if f.start.IsZero() {
					continue
				}
				if _, err := upd.Exec(f.start.UnixMilli(), f.rid); err != nil {
					return err
				}
			}
			last = page[len(page)-1].rid
		}
	}
	return nil
}

// packSubEventRows packs every subscription's held events (sub_events, a
// row each) into pages of at most subPageMigrated events, each one run of
// consecutive numbers, reading the rows in batches so memory stays bounded.
func packSubEventRows(tx *sql.Tx) error {
	const subPageMigrated, batch = 100, 10000
	var sub string
	var page []store.SubEvent
	flush := func() error {
		if len(page) == 0 {
			return nil
		}
		blob, err := packSubEvents(page)
		if err != nil {
			return err
		}
		_, err = tx.Exec(`INSERT INTO sub_pages(sub, last, first, events) VALUES (?, ?, ?, ?)`, sub, page[len(page)-1].Number, page[0].Number, blob)
		page = page[:0]
		return err
	}
	type row struct {
		sub string
		e   store.SubEvent
	}
	for lastSub, lastNum := "", int64(-1); ; {
		rs, err := tx.Query(`SELECT sub, number, seq, recorded, aid FROM sub_events WHERE (sub, number) > (?, ?)
			ORDER BY sub, number LIMIT ?`, lastSub, lastNum, batch)
		if err != nil {
			return err
		}
		var got []row
		for rs.Next() {
			var r row
			var rec int64
			if err := rs.Scan(&r.sub, &r.e.Number, &r.e.Seq, &rec, &r.e.ID); err != nil {
				rs.Close()
				return err
			}
			r.e.Recorded = time.Unix(0, rec).UTC()
			got = append(got, r)
		}
		if err := rs.Close(); err != nil {
			return err
		}
		if err := rs.Err(); err != nil {
			return err
		}
		if len(got) == 0 {
			return flush()
		}
		for _, r := range got {
			if r.sub != sub || len(page) == subPageMigrated || (len(page) > 0 && page[len(page)-1].Number != r.e.Number-1) {
				if err := flush(); err != nil {
					return err
				}
				sub = r.sub
			}
			page = append(page, r.e)
		}
		lastSub, lastNum = got[len(got)-1].sub, got[len(got)-1].e.Number
	}
}

// migrate brings the database to schemaVersion, one step per transaction,
// and says whether there was a step to take.
func migrate(db *sql.DB) (migrated bool, err error) {
	var v int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		return false, fmt.Errorf("store/sqlite: reading schema version: %w", err)
	}
	if v > schemaVersion {
		return false, fmt.Errorf("store/sqlite: the database's schema %d is newer than this server's (%d)", v, schemaVersion)
	}
	migrated = v < schemaVersion
	for ; v < schemaVersion; v++ {
		tx, err := db.Begin()
		if err != nil {
			return false, fmt.Errorf("store/sqlite: migrate to %d: %w", v+1, err)
		}
		for _, st := range append(migrations[v], fmt.Sprintf(`PRAGMA user_version = %d`, v+1)) {
			var err error
			if name, ok := strings.CutPrefix(st, goStepPrefix); ok {
				if fn := goSteps[name]; fn != nil {
					err = fn(tx)
				} else {
					err = fmt.Errorf("no migration step %q", name)
				}
			} else {
				_, err = tx.Exec(st)
			}
			if err != nil {
				tx.Rollback()
				return false, fmt.Errorf("store/sqlite: migrate to %d: %w", v+1, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return false, fmt.Errorf("store/sqlite: migrate to %d: %w", v+1, err)
		}
	}
	return migrated, nil
}

// prefixed qualifies each column of a list with a table alias.
func prefixed(alias, list string) string {
	out := ""
	for i, c := range splitCols(list) {
		if i > 0 {
			out += ", "
		}
		out += alias + "." + c
	}
	return out
}
