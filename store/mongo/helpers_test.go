package mongo

import (
	"fmt"
	"time"

	"cpis/store"
)

// Record and access-record builders, in the shape the conformance suite uses.

var t0 = time.Date(2026, 3, 1, 9, 30, 0, 123000000, time.UTC)

func plan(id string, v int64, subject, owner string, keys ...string) store.Record {
	return store.Record{
		Type: "EpisodeOfCare", ID: id, Version: v, Updated: t0.Add(time.Duration(v) * time.Second),
		Owner: owner, Subject: subject, Keys: keys,
		Body: []byte(fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":%q,"meta":{"versionId":"%d"}}`, id, v)),
		Derived: &store.Derived{Type: "Flag",
			Body: []byte(fmt.Sprintf(`{"resourceType":"Flag","id":%q,"status":"active"}`, id))},
	}
}

func audit(id string, at time.Time, subject, agent string, notify bool, owners ...string) store.AuditRecord {
	return store.AuditRecord{ID: id, Recorded: at, Subject: subject, Agent: agent, Notify: notify, Owners: owners,
		Body: []byte(fmt.Sprintf(`{"resourceType":"AuditEvent","id":%q}`, id))}
}

func auditIDs(recs []store.AuditRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func recordIDs(recs []store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}
