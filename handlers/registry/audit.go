package registry

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"sort"

	"cpis/auth"
	"cpis/fhir"
	"cpis/profiles"
	"cpis/store"
)

// touched is what one read or search saw: for each NHS number, the local
// authorities whose records were shown, and how many plans.
type touched map[string]*touch

type touch struct {
	owners map[string]bool
	plans  int
}

func (t touched) add(subject, owner string) {
	x := t.see(subject)
	if owner != "" && !x.owners[owner] {
		x.owners[owner] = true
	}
	x.plans++
}

// see records that subject was looked up, even if nothing was found.
func (t touched) see(subject string) *touch {
	x, ok := t[subject]
	if !ok {
		x = &touch{owners: map[string]bool{}}
		t[subject] = x
	}
	return x
}

// audited is the one gate every read of patient records passes before the
// records leave the registry: it records the access durably (an AuditEvent
// per patient) or, for a silent read, writes the security log. If the audit
// cannot be written the read fails with 503 and no data: a child's record is
// never shown unaudited.
func (r *Registry) audited(ctx context.Context, c Caller, interaction, query, resource string, t touched) error {
	if len(t) == 0 {
		return nil
	}
	p := c.P
	if c.Silent {
		for subject, x := range t {
			r.security.LogAttrs(ctx, slog.LevelInfo, "silent read",
				slog.String("request_id", c.RequestID),
				slog.String("interaction", interaction),
				slog.String("route", c.Route),
				slog.String("principal", p.Kind.String()),
				slog.String("user", p.UserID),
				slog.String("org", p.OrgCode),
				slog.String("subject_hash", r.subjectHash(subject)),
				slog.Int("plans", x.plans),
			)
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
			System: p.Kind == auth.System, UserName: p.Name, UserID: p.UserID, RoleID: p.RoleID, RoleName: p.RoleName,
			OrgCode: p.OrgCode, OrgName: p.OrgName,
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
		recs = append(recs, store.AuditRecord{
			ID: a.ID, Recorded: now, Subject: subject, Owners: owners, Agent: agent,
			Notify: p.Kind == auth.User, Body: profiles.AuditEvent(a),
		})
	}
	if err := r.st.Audit(ctx, recs); err != nil {
		return fhir.Wrap(fhir.KindUnavailable, err, "The access could not be recorded, so no record is shown; try again shortly (request %s)", c.RequestID)
	}
	return nil
}

// subjectHash is a keyed hash of an NHS number, so security-log lines about
// one patient can be correlated without the log holding the number.
func (r *Registry) subjectHash(subject string) string {
	m := hmac.New(sha256.New, r.subjectKey)
	m.Write([]byte(subject))
	return hex.EncodeToString(m.Sum(nil)[:12])
}
