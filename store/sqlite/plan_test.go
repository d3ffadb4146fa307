package sqlite

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// TestQueriesUseIndexes checks the query plans of the lookups on the hot
// path: none may scan a table, so their cost does not grow with the data.
func TestQueriesUseIndexes(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	defer s.Close()
	since := time.Now()
	// Each query must seek by its most selective condition (the index
	// named), never walk every record of a type.
	cases := map[string]struct {
		q     store.Query
		index string
	}{
		"flags-by-nhs-number": {store.Query{Type: "Flag", Subject: "9449306753", RetainedSince: since, Limit: 50}, "resources_subject"},
		"plans-by-nhs-number": {store.Query{Type: "EpisodeOfCare", Subject: "9449306753", Owner: "LA001", RetainedSince: since, Limit: 50}, "resources_subject"},
		"by-identifier":       {store.Query{Type: "Organization", Key: "https://fhir.nhs.uk/Id/ods-organization-code|LA001", Limit: 1}, "sqlite_autoindex_resources_1 (type=? AND id=?)"},
		"by-id":               {store.Query{Type: "Flag", IDs: []string{"a", "b"}, Limit: 50}, "resources_id"},
		"la-lists-its-own":    {store.Query{Type: "Flag", Owner: "LA001", RetainedSince: since, Limit: 50, After: "x"}, "resources_owner"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cond, args := searchWhere(c.q)
			plan := explain(t, s, `SELECT `+cols+` FROM resources WHERE `+cond+` ORDER BY id LIMIT 50`, args...)
			assert.Contains(t, plan, c.index, plan)
			assert.NotContains(t, plan, "SCAN resources", plan)
			assert.NotContains(t, plan, "(type=?)", plan)
			assert.NotContains(t, plan, "(dtype=?)", plan)
		})
	}
	for name, c := range map[string]struct{ q, want string }{
		"audit-heads-by-subject": {`SELECT a.seq, a.id, a.recorded, a.subject, a.agent, a.owners FROM audit a INDEXED BY audit_subject
			WHERE a.subject = '1' AND a.notify = 1 AND a.recorded >= 0 ORDER BY a.recorded DESC, a.seq DESC LIMIT 2000`, "USING COVERING INDEX audit_subject"},
		"audit-bodies": {`SELECT ` + auditCols + ` FROM json_each('[3,1]') j JOIN audit a ON a.seq = j.value ORDER BY j.key`, "USING INTEGER PRIMARY KEY"},
	} {
		t.Run(name, func(t *testing.T) {
			plan := explain(t, s, c.q)
			assert.Contains(t, plan, c.want, plan)
			assert.NotRegexp(t, `SCAN (resources|audit|audit_owner|history)\b`, plan, plan)
		})
	}
	for name, q := range map[string]string{
		"get":              strings.NewReplacer("type = ?", "type = 'Flag'", "dtype = ?", "dtype = 'Flag'", "id = ?", "id = 'x'").Replace(getSQL),
		"audit-by-subject": `SELECT a.seq FROM audit a WHERE a.subject = '1' AND a.notify = 1 AND a.recorded >= 0 ORDER BY a.recorded DESC, a.seq DESC LIMIT 2000`,
		"audit-feed":       `SELECT a.seq FROM audit_owner o JOIN audit a ON a.seq = o.seq WHERE o.owner = 'LA001' AND o.seq > 5 AND o.recorded >= 0 ORDER BY o.seq LIMIT 50`,
		"audit-feed-total": `SELECT count(*) FROM audit_owner WHERE owner = 'LA001' AND recorded >= 0`,
		"audit-feed-first": `SELECT min(seq) FROM audit_owner INDEXED BY audit_owner_recorded WHERE owner = 'LA001' AND recorded >= 0`,
		"purge-audit-due": `SELECT a.seq, a.recorded, a.owners, NOT EXISTS (SELECT 1 FROM resources r WHERE r.subject = a.subject)
			FROM audit a WHERE a.recorded < 9 AND (a.recorded, a.seq) > (1, 2) ORDER BY a.recorded, a.seq LIMIT 5000`,
		"purge-audit":      strings.NewReplacer("seq = ?", "seq = 5", "recorded < ?", "recorded < 9").Replace(sqlPurgeAudit),
		"purge-feed-row":   `DELETE FROM audit_owner WHERE owner = 'LA001' AND seq = 5`,
		"history":          `SELECT ` + cols + ` FROM history WHERE type = 'Flag' AND id = 'x' ORDER BY version DESC`,
		"purge-candidates": `SELECT type, id FROM resources WHERE plan_end IS NOT NULL AND plan_end < 5 LIMIT 500`,
	} {
		t.Run(name, func(t *testing.T) {
			plan := explain(t, s, q)
			assert.NotRegexp(t, `SCAN (resources|audit|audit_owner|history)\b`, plan, plan)
			assert.NotContains(t, plan, "TEMP B-TREE", "ordered by the index: "+plan)
		})
	}
}

func explain(t *testing.T, s *Store, q string, args ...any) string {
	rows, err := s.r.QueryContext(context.Background(), `EXPLAIN QUERY PLAN `+q, args...)
	require.NoError(t, err)
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &notused, &detail))
		lines = append(lines, detail)
	}
	return strings.Join(lines, "\n")
}

// TestStatementCacheIsBounded asks with many page sizes: the answers stay
// right and the server keeps at most maxStmts prepared statements.
func TestStatementCacheIsBounded(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	require.NoError(t, s.Commit(ctx, []store.Write{{Record: store.Record{Type: "EpisodeOfCare", ID: "p1", Version: 1, Updated: time.Now(),
		Owner: "LA001", Subject: "9449306753", Body: []byte(`{}`)}}}))
	for limit := 1; limit <= maxStmts+100; limit++ {
		recs, _, err := s.Search(ctx, store.Query{Type: "EpisodeOfCare", Subject: "9449306753", Limit: limit})
		require.NoError(t, err)
		require.Len(t, recs, 1)
	}
	n := 0
	s.stmts.Range(func(_, _ any) bool { n++; return true })
	assert.LessOrEqual(t, n, maxStmts)
	assert.Equal(t, int64(n), s.nstmts.Load())
}
