package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// defaultCheckTimeout bounds the start-up integrity check.
const defaultCheckTimeout = 20 * time.Second

// indexCounts are the checks that each index holds as many entries as its
// table has rows: PRAGMA quick_check reads every page but does not compare
// an index with its table, and a Flag search answers from the index alone.
// splitBy names the index's first column when the index is counted in
// ranges of it, on every core (see countIndexes).
var indexCounts = []struct{ table, index, splitBy string }{
	{"resources", "sqlite_autoindex_resources_1", ""},
	{"resources", "resources_subject", ""},
	{"resources", "resources_id", ""},
	{"resources", "resources_owner", ""},
	{"resources", "resources_derived", ""},
	{"resources", "resources_end", ""},
	{"history", "sqlite_autoindex_history_1", ""},
	{"keys", "", ""},
	{"audit", "audit_subject", "subject"},
	{"audit", "audit_recorded", ""},
}

// flagSample is how many of the newest plans are looked up through each
// index the Flag and plan searches use.
const flagSample = 200

// startupCheck checks the database before the server uses it: PRAGMA
// quick_check (every page readable and well formed), the indexes against
// their tables (counted on pool), and a sample of the newest plans found
// through the indexes a Flag search uses. quick_check is skipped when
// sealed.unsealed is "": the file is byte for byte what the last clean
// shutdown sealed (see seal.go); otherwise it says why it runs. The index
// counts are skipped when that shutdown counted them on those bytes
// (sealed.counted). It stops at timeout (a very large database), logs what
// it did not check and lets the start go on; a failed check refuses the
// start.
func startupCheck(db, pool *sql.DB, timeout time.Duration, log *slog.Logger, sealed sealState) error {
	if timeout < 0 {
		log.Warn("the start-up integrity check is turned off")
		return nil
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stopped := func(err error, step string) error {
		if ctx.Err() != nil {
			log.Warn("the start-up integrity check stopped at its time limit; the rest of the database was not checked",
				slog.String("unchecked_from", step), slog.Duration("limit", timeout))
			return nil
		}
		return fmt.Errorf("store/sqlite: start-up integrity check (%s): %w", step, err)
	}
	if sealed.unsealed == "" {
		log.Info("the database is as the last clean shutdown sealed it (checksums verified): PRAGMA quick_check skipped")
	} else if err := quickCheck(ctx, db, sealed.unsealed, log, stopped); err != nil {
		return err
	}
	if sealed.counted {
		log.Info("the index counts agreed at the clean shutdown that sealed the database: not counted again")
	} else if err := countIndexes(ctx, pool, sealed.unsealed != "", stopped); err != nil {
		return err
	}
	if err := checkFlagSample(ctx, db); err != nil {
		if errors.Is(err, errDamaged) {
			return err
		}
		return stopped(err, "plan sample")
	}
	log.Info("start-up integrity check passed", slog.Duration("took", time.Since(start)), slog.Bool("sealed", sealed.unsealed == ""),
		slog.Bool("counted_at_shutdown", sealed.counted))
	return nil
}

// quickCheck runs PRAGMA quick_check: every page readable and well formed.
func quickCheck(ctx context.Context, db *sql.DB, why string, log *slog.Logger, stopped func(error, string) error) error {
	if why != "no seal of a clean shutdown" {
		log.Warn("the database is not as the last clean shutdown sealed it: checking it in full", slog.String("reason", why))
	}
	rows, err := db.QueryContext(ctx, `PRAGMA quick_check(20)`)
	if err != nil {
		return stopped(err, "quick_check")
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return stopped(err, "quick_check")
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return stopped(err, "quick_check")
	}
	if len(problems) > 0 {
		return fmt.Errorf("store/sqlite: the database is damaged (PRAGMA quick_check): %s", strings.Join(problems, "; "))
	}
	return nil
}

// countIndexes checks each index holds as many entries as its table has
// rows. A table's count reads the whole table; when the file is as its
// clean shutdown sealed it, each index is counted against the table's
// first index instead, reading indexes only (an index that lost entries
// still disagrees with the others). The counts run at once, one on each
// core (pool's connections), the access records' indexes first: they are
// most of the work at national volume (tens of millions of entries); the
// comparisons then go in indexCounts' order, as one by one.
func countIndexes(ctx context.Context, pool *sql.DB, scanTables bool, stopped func(error, string) error) error {
	type count struct {
		q     string
		args  []any
		n     int64
		err   error
		parts []*count // counted in parts: n is their sum, err the first of theirs
	}
	tables, indexes := map[string]*count{}, map[string]*count{}
	var todo []*count
	for _, ic := range indexCounts {
		if _, ok := tables[ic.table]; !ok && (scanTables || ic.index == "") {
			tables[ic.table] = &count{q: `SELECT coalesce(sum(1), 0) FROM ` + ic.table + ` NOT INDEXED`}
			todo = append(todo, tables[ic.table])
		} else if !ok {
			tables[ic.table] = nil // its first index is the reference
		}
		if ic.index == "" {
			continue
		}
		c := &count{q: `SELECT coalesce(sum(1), 0) FROM ` + ic.table + ` INDEXED BY ` + ic.index}
		indexes[ic.index] = c
		if ic.splitBy == "" {
			todo = append(todo, c)
			continue
		}
		// Most of the work, in ranges of its first column that the cores
		// share; together the ranges cover every value (the column is NOT
		// NULL) and no value twice. An entry out of its place in the index
		// is counted in no range (each range's walk ends at the first entry
		// past it), so the sum disagrees: damage found, as it is.
		cuts := splitPoints(ctx, pool, ic.table, ic.splitBy)
		where := c.q + ` WHERE ` + ic.splitBy
		for i := 0; i <= len(cuts); i++ {
			var part *count
			switch {
			case len(cuts) == 0:
				part = &count{q: c.q}
			case i == 0:
				part = &count{q: where + ` < ?`, args: []any{cuts[0]}}
			case i == len(cuts):
				part = &count{q: where + ` >= ?`, args: []any{cuts[i-1]}}
			default:
				part = &count{q: where + ` >= ? AND ` + ic.splitBy + ` < ?`, args: []any{cuts[i-1], cuts[i]}}
			}
			c.parts = append(c.parts, part)
			todo = append(todo, part)
		}
	}
	slices.Reverse(todo) // the access records (the end of the list) first
	next := make(chan *count)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				c.err = pool.QueryRowContext(ctx, c.q, c.args...).Scan(&c.n)
			}
		}()
	}
	for _, c := range todo {
		next <- c
	}
	close(next)
	wg.Wait()
	for _, c := range indexes {
		for _, p := range c.parts {
			c.n += p.n
			c.err = cmp.Or(c.err, p.err)
		}
	}

	// A count that did not finish (the time limit) leaves its table's
	// comparisons out; the others are still made, and damage found wins.
	type ref struct {
		n    int64
		what string
		err  error
	}
	refs := map[string]ref{}
	var unfinished error
	var unfinishedStep string
	for _, ic := range indexCounts {
		r, ok := refs[ic.table]
		if c := tables[ic.table]; !ok && c != nil {
			r = ref{c.n, "table " + ic.table + " has %d rows", c.err}
			refs[ic.table], ok = r, true
		}
		err := r.err
		var c *count
		if ic.index != "" {
			c = indexes[ic.index]
			err = cmp.Or(err, c.err)
		}
		if err != nil {
			if unfinished == nil {
				unfinished, unfinishedStep = err, "index "+ic.index
			}
			if !ok {
				refs[ic.table] = ref{err: err}
			}
			continue
		}
		if c == nil {
			continue
		}
		if !ok {
			refs[ic.table] = ref{c.n, "index " + ic.index + " of table " + ic.table + " has %d entries", nil}
			continue
		}
		if r.n != c.n {
			return fmt.Errorf("store/sqlite: the database is damaged: "+r.what+" but its index %s has %d entries", r.n, ic.index, c.n)
		}
	}
	if unfinished != nil {
		return stopped(unfinished, unfinishedStep)
	}
	return nil
}

// countForSeal counts the indexes for the seal of a clean close, as a start
// on a sealed file would (each against its table's first index), on the
// database as it is about to be sealed: the writer has stopped. It says
// whether they agreed; false, with no error, when the check is turned off,
// the counts stopped at the time limit or failed, or another connection
// wrote while they ran (PRAGMA data_version, on the writer's connection, changes only
// for another's commits). Counts that disagree are damage, the error.
func (s *Store) countForSeal() (bool, error) {
	if s.opts.CheckTimeout < 0 {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CheckTimeout)
	defer cancel()
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return false, nil
	}
	defer conn.Close()
	version := func() (v int64, err error) {
		err = conn.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v)
		return v, err
	}
	before, err := version()
	if err != nil {
		return false, nil
	}
	errStopped := errors.New("stopped")
	err = countIndexes(ctx, s.r, false, func(error, string) error { return errStopped })
	if errors.Is(err, errStopped) {
		s.log.Warn("the index counts did not finish at shutdown; the next start counts them", slog.Duration("limit", s.opts.CheckTimeout))
		return false, nil
	}
	if err != nil {
		return false, err
	}
	after, err := version()
	return err == nil && after == before, nil
}

// splitParts is how many ranges an index counted in parts is cut into:
// more than the cores, so one that turns out larger is shared.
const splitParts = 8

// splitPoints cuts table's values of column into about splitParts equal
// ranges: the sorted values of rows spread evenly over the table's rowids
// (as many as 8 for each cut), every 8th. None (one range) for a small
// table or if a read fails: the count itself then says why.
func splitPoints(ctx context.Context, pool *sql.DB, table, column string) []string {
	const per = 8
	var lo, hi sql.NullInt64
	if err := pool.QueryRowContext(ctx, `SELECT (SELECT min(rowid) FROM `+table+`), (SELECT max(rowid) FROM `+table+`)`).Scan(&lo, &hi); err != nil ||
		!lo.Valid || hi.Int64-lo.Int64 < 1000 {
		return nil
	}
	var samples []string
	for i := int64(1); i < splitParts*per; i++ {
		var v string
		at := lo.Int64 + (hi.Int64-lo.Int64)*i/(splitParts*per)
		if err := pool.QueryRowContext(ctx, `SELECT `+column+` FROM `+table+` WHERE rowid >= ? ORDER BY rowid LIMIT 1`, at).Scan(&v); err != nil {
			return nil
		}
		samples = append(samples, v)
	}
	slices.Sort(samples)
	var cuts []string
	for i := per - 1; i < len(samples); i += per {
		cuts = append(cuts, samples[i])
	}
	return slices.Compact(cuts)
}

var errDamaged = errors.New("store/sqlite: the database is damaged")

// checkFlagSample finds each of the newest plans through the indexes a
// Flag search, a plan read and a derived-record read use.
func checkFlagSample(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT rid, type, id, subject, dtype FROM resources NOT INDEXED
		WHERE type = 'EpisodeOfCare' ORDER BY rid DESC LIMIT ?`, flagSample)
	if err != nil {
		return err
	}
	type plan struct {
		rid              int64
		typ, id, subject string
		dtype            sql.NullString
	}
	var plans []plan
	for rows.Next() {
		var p plan
		if err := rows.Scan(&p.rid, &p.typ, &p.id, &p.subject, &p.dtype); err != nil {
			rows.Close()
			return err
		}
		plans = append(plans, p)
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return err
	}
	for _, p := range plans {
		lookups := []struct {
			index, q string
			args     []any
		}{
			{"sqlite_autoindex_resources_1", `SELECT count(*) FROM resources INDEXED BY sqlite_autoindex_resources_1 WHERE type = ? AND id = ? AND rid = ?`, []any{p.typ, p.id, p.rid}},
			{"resources_subject", `SELECT count(*) FROM resources INDEXED BY resources_subject WHERE subject = ? AND rid = ?`, []any{p.subject, p.rid}},
		}
		if p.dtype.Valid {
			lookups = append(lookups, struct {
				index, q string
				args     []any
			}{"resources_derived", `SELECT count(*) FROM resources INDEXED BY resources_derived WHERE dtype = ? AND id = ? AND rid = ?`, []any{p.dtype.String, p.id, p.rid}})
		}
		for _, l := range lookups {
			var n int
			if err := db.QueryRowContext(ctx, l.q, l.args...).Scan(&n); err != nil {
				return err
			}
			if n != 1 {
				return fmt.Errorf("%w: a plan's row is missing from index %s", errDamaged, l.index)
			}
		}
	}
	return nil
}
