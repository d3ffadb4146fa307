package registry

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"log/slog"
	"sort"
	"strings"
	"time"

	"cpis/auth"
	"cpis/fhir"
	"cpis/profiles"
	"cpis/store"
)

// touched is what one read or search saw: for each NHS number, the local
// authorities whose records were shown, and how many plans.
type touched map[string]*touch

type touch struct {
	owners map[string]*part
	plans  int
}

// part is what one read or search showed of one local authority's plans.
type part struct {
	plans int
	ids   map[string]bool
}

// add records that r was shown.
func (t touched) add(r store.Record) {
	x := t.see(r.Subject)
	x.plans++
	if r.Owner == "" {
		return
	}
	o, ok := x.owners[r.Owner]
	if !ok {
		o = &part{ids: map[string]bool{}}
		x.owners[r.Owner] = o
	}
	o.plans++
	o.ids[r.ID] = true
}

// see records that subject was looked up, even if nothing was found.
func (t touched) see(subject string) *touch {
	x, ok := t[subject]
	if !ok {
		x = &touch{owners: map[string]*part{}}
		t[subject] = x
	}
	return x
}

// audited is the one gate every read of patient records passes before the
// records leave the registry: it records the access durably (an AuditEvent
// per patient) or, for a silent read, writes the security log. If the audit
// cannot be written the read fails with 503 and no data: a child's record is
// never shown unaudited.
//
// A silent read's security-log line is its only record, so it is handed to
// the log's handler directly rather than through slog.Logger, which would
// drop it below the configured log level (CPIS_LOG_LEVEL=warn) and discard
// the handler's error: the line is written whatever the level, and a line
// the handler could not write (cpis serve's waits for its write: see
// package logsink) fails the read as an AuditEvent not stored does.
func (r *Registry) audited(ctx context.Context, c Caller, interaction, query, resource string, t touched) error {
	if len(t) == 0 {
		return nil
	}
	p := c.P
	if c.Silent {
		h := r.security.Handler()
		for subject, x := range t {
			line := slog.NewRecord(time.Now(), slog.LevelInfo, "silent read", 0)
			line.AddAttrs(
				slog.String("request_id", c.RequestID),
				slog.String("interaction", interaction),
				slog.String("route", c.Route),
				slog.String("principal", p.Kind.String()),
				slog.String("user", p.UserID),
				slog.String("org", p.OrgCode),
				slog.String("subject_hash", r.subjectHash(subject)),
				slog.Int("plans", x.plans),
			)
			if err := h.Handle(ctx, line); err != nil {
				return fhir.Wrap(fhir.KindUnavailable, err, "The access could not be recorded, so no record is shown; try again shortly (request %s)", c.RequestID)
			}
		}
		return nil
	}
	now := r.Now()
	subjects := make([]string, 0, len(t))
	for subject := range t {
		subjects = append(subjects, subject)
	}
	sort.Strings(subjects)
	recs := make([]store.AuditRecord, 0, len(t))
	for _, subject := range subjects {
		x := t[subject]
		a := profiles.Access{
			ID: r.newID(), Recorded: now, Interaction: interaction, Query: query, Resource: resource,
			NHSNumber: subject, Results: x.plans,
			System: p.Kind == auth.System, UserName: p.Name, UserID: p.UserID, RoleID: p.RoleID, RoleName: p.RoleName, RoleCode: p.RoleCode,
			OrgCode: p.OrgCode, OrgName: p.OrgName, TraceID: c.TraceID,
		}
		agent := "user:" + p.UserID
		if a.System {
			a.UserID = p.Subject
			agent = "system:" + p.Subject
		}
		owners := make([]string, 0, len(x.owners))
		for o := range x.owners {
			owners = append(owners, o)
		}
		sort.Strings(owners)
		rec := store.AuditRecord{
			ID: a.ID, Recorded: now, Subject: subject, Owners: owners, Agent: agent,
			Notify: p.Kind == auth.User, Body: profiles.AuditEvent(a),
		}
		if rec.Notify {
			rec.Views = laViews(a, x)
		}
		recs = append(recs, rec)
	}
	if err := r.st.Audit(ctx, recs); err != nil {
		return fhir.Wrap(fhir.KindUnavailable, err, "The access could not be recorded, so no record is shown; try again shortly (request %s)", c.RequestID)
	}
	if r.notified != nil && p.Kind == auth.User {
		r.notified()
	}
	return nil
}

// subjectHash is a keyed hash of an NHS number, so security-log lines about
// one patient can be correlated without the log holding the number.
func (r *Registry) subjectHash(subject string) string {
	// A keyed HMAC is reused (Reset restores its keyed state), not made
	// again for every silent read.
	m, _ := r.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, r.subjectKey)
	}
	m.Reset()
	m.Write([]byte(subject))
	var sum [sha256.Size]byte
	out := hex.EncodeToString(m.Sum(sum[:0])[:12])
	r.macs.Put(m)
	return out
}

// laViews renders the AuditEvent each local authority is shown of an access,
// where it differs from the whole: an LA sees only what was disclosed about
// its own plans (contract section 4), so its view counts only its plans and
// its query names only their ids. An access that showed one authority's
// plans, found by NHS number, needs no view: nearly every access.
func laViews(a profiles.Access, x *touch) map[string][]byte {
	var views map[string][]byte
	for o, own := range x.owners {
		v := a
		v.Results = own.plans
		v.Query = onlyIDs(a.Query, own.ids)
		if v.Results == a.Results && v.Query == a.Query {
			continue
		}
		if views == nil {
			views = map[string][]byte{}
		}
		views[o] = profiles.AuditEvent(v)
	}
	return views
}

// onlyIDs narrows the _id parameters of an audited query (Type?a=b&...,
// as selfQuery renders it) to the ids in keep; a parameter left with none
// is dropped. Ids are plain ([A-Za-z0-9-.]), so they need no unescaping.
func onlyIDs(query string, keep map[string]bool) string {
	path, params, ok := strings.Cut(query, "?")
	if !ok || !strings.Contains(params, "_id=") {
		return query
	}
	parts := strings.Split(params, "&")
	out := parts[:0]
	for _, prm := range parts {
		vals, isID := strings.CutPrefix(prm, "_id=")
		if !isID {
			out = append(out, prm)
			continue
		}
		var kept []string
		for _, id := range strings.Split(vals, ",") {
			if keep[id] {
				kept = append(kept, id)
			}
		}
		if len(kept) > 0 {
			out = append(out, "_id="+strings.Join(kept, ","))
		}
	}
	return path + "?" + strings.Join(out, "&")
}

// shownTo is the AuditEvent of an access as p is served it: a health user
// the whole record, a local authority its own view. A record from before
// views were kept that showed several authorities' plans is served to an
// LA without its count and without ids in its query, never whole.
func shownTo(p *auth.Principal, r store.AuditRecord) ([]byte, error) {
	if !p.IsLA() {
		return r.Body, nil
	}
	if v, ok := r.Views[p.OrgCode]; ok {
		return v, nil
	}
	if len(r.Owners) <= 1 {
		return r.Body, nil
	}
	body, err := profiles.RedactAuditEvent(r.Body, func(q string) string { return onlyIDs(q, nil) })
	if err != nil {
		return nil, fhir.Wrap(fhir.KindInternal, err, "An access record could not be read")
	}
	return body, nil
}
