package dumpfile

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"cpis/store"
)

// blob is a stored body as a dump line holds it: the JSON itself when it is
// one compact JSON value (so the dump is readable and the bytes round-trip
// exactly), else a string of its base64.
type blob []byte

func (b blob) MarshalJSON() ([]byte, error) {
	if len(b) > 0 && (b[0] == '{' || b[0] == '[') {
		var c bytes.Buffer
		c.Grow(len(b))
		if json.Compact(&c, b) == nil && bytes.Equal(c.Bytes(), b) { // Compact validates too
			return b, nil
		}
	}
	return json.Marshal(base64.StdEncoding.EncodeToString(b))
}

func (b *blob) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		v, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return err
		}
		if len(v) == 0 {
			v = nil // an empty body is stored as none
		}
		*b = v
		return nil
	}
	*b = append((*b)[:0], data...)
	return nil
}

// recordLine is one line of resources.ndjson: a record with every version.
type recordLine struct {
	Type     string        `json:"type"`
	ID       string        `json:"id"`
	Keys     []string      `json:"keys,omitempty"`
	Versions []versionLine `json:"versions"`
}

type versionLine struct {
	Version int64        `json:"version"`
	Updated string       `json:"updated"`
	Deleted bool         `json:"deleted,omitempty"`
	Owner   string       `json:"owner,omitempty"`
	Subject string       `json:"subject,omitempty"`
	End     string       `json:"end,omitempty"`
	Ends    string       `json:"ends,omitempty"`
	Body    blob         `json:"body,omitempty"`
	Derived *derivedLine `json:"derived,omitempty"`
}

type derivedLine struct {
	Type string `json:"type"`
	Body blob   `json:"body,omitempty"`
	Ends string `json:"ends,omitempty"`
}

// auditLine is one line of audit.ndjson: an access record and its place in
// the feed.
type auditLine struct {
	Seq      int64           `json:"seq"`
	ID       string          `json:"id"`
	Recorded string          `json:"recorded"`
	Subject  string          `json:"subject"`
	Owners   []string        `json:"owners,omitempty"`
	Agent    string          `json:"agent,omitempty"`
	Notify   bool            `json:"notify,omitempty"`
	Body     blob            `json:"body,omitempty"`
	Views    map[string]blob `json:"views,omitempty"`
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t.UTC(), err
}

// auditType is the type under which access records are counted.
const auditType = "AuditEvent"

// encode returns an item's line (with its newline), the type it counts
// under, and whether it belongs in the audit file. Owners and keys are
// sorted: stores keep them as sets.
func encode(it store.Item) (line []byte, typ string, isAudit bool, err error) {
	var v any
	switch {
	case len(it.Versions) > 0:
		last := it.Versions[len(it.Versions)-1]
		l := recordLine{Type: last.Type, ID: last.ID, Keys: slices.Sorted(slices.Values(last.Keys))}
		if last.Deleted {
			l.Keys = nil
		}
		for _, r := range it.Versions {
			vl := versionLine{Version: r.Version, Updated: timeText(r.Updated), Deleted: r.Deleted, Owner: r.Owner,
				Subject: r.Subject, End: timeText(r.End), Ends: timeText(r.Ends), Body: r.Body}
			if r.Derived != nil {
				vl.Derived = &derivedLine{Type: r.Derived.Type, Body: r.Derived.Body, Ends: timeText(r.Derived.Ends)}
			}
			l.Versions = append(l.Versions, vl)
		}
		v, typ = l, last.Type
	case it.Audit != nil:
		a := it.Audit
		owners := slices.Compact(slices.Sorted(slices.Values(a.Owners)))
		l := auditLine{Seq: it.Seq, ID: a.ID, Recorded: timeText(a.Recorded), Subject: a.Subject, Owners: owners,
			Agent: a.Agent, Notify: a.Notify, Body: a.Body}
		if len(a.Views) > 0 {
			l.Views = make(map[string]blob, len(a.Views))
			for o, b := range a.Views {
				l.Views[o] = b
			}
		}
		v, typ, isAudit = l, auditType, true
	default:
		return nil, "", false, errors.New("dumpfile: the sequence mark is not a line")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // bodies are kept byte for byte
	if err := enc.Encode(v); err != nil {
		return nil, "", false, fmt.Errorf("dumpfile: encoding %s: %w", typ, err)
	}
	return buf.Bytes(), typ, isAudit, nil
}

func decodeRecord(line []byte) (store.Item, error) {
	var l recordLine
	if err := json.Unmarshal(line, &l); err != nil {
		return store.Item{}, err
	}
	if l.Type == "" || l.ID == "" || len(l.Versions) == 0 {
		return store.Item{}, errors.New("a record line needs a type, an id and at least one version")
	}
	it := store.Item{}
	for i, vl := range l.Versions {
		r := store.Record{Type: l.Type, ID: l.ID, Version: vl.Version, Deleted: vl.Deleted, Owner: vl.Owner, Subject: vl.Subject, Body: vl.Body}
		// A line does not carry the period start (_sort=date): it is
		// recomputed from the body as the server computed it, so dumps
		// written before it was kept load the same and verify unchanged.
		r.Start = store.PeriodStart(r.Body)
		var err error
		if r.Updated, err = parseTime(vl.Updated); err != nil {
			return store.Item{}, err
		}
		if r.End, err = parseTime(vl.End); err != nil {
			return store.Item{}, err
		}
		if r.Ends, err = parseTime(vl.Ends); err != nil {
			return store.Item{}, err
		}
		if vl.Derived != nil {
			d := &store.Derived{Type: vl.Derived.Type, Body: vl.Derived.Body}
			if d.Ends, err = parseTime(vl.Derived.Ends); err != nil {
				return store.Item{}, err
			}
			r.Derived = d
		}
		if i == len(l.Versions)-1 && !r.Deleted {
			r.Keys = l.Keys
		}
		it.Versions = append(it.Versions, r)
	}
	return it, nil
}

func decodeAudit(line []byte) (store.Item, error) {
	var l auditLine
	if err := json.Unmarshal(line, &l); err != nil {
		return store.Item{}, err
	}
	if l.Seq <= 0 || l.ID == "" {
		return store.Item{}, errors.New("an access record line needs a sequence number and an id")
	}
	a := &store.AuditRecord{Seq: l.Seq, ID: l.ID, Subject: l.Subject, Owners: l.Owners, Agent: l.Agent, Notify: l.Notify, Body: l.Body}
	var err error
	if a.Recorded, err = parseTime(l.Recorded); err != nil {
		return store.Item{}, err
	}
	if len(l.Views) > 0 {
		a.Views = make(map[string][]byte, len(l.Views))
		for o, b := range l.Views {
			a.Views[o] = b
		}
	}
	return store.Item{Audit: a, Seq: l.Seq}, nil
}
