package handlers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"sort"

	"github.com/gin-gonic/gin"

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

// recordAccess audits a read or search of patients' records before the
// response is written. Silent reads go to the security log instead. If the
// audit cannot be written durably the request fails with 503 and no data:
// a child's record is never shown unaudited.
func (s *Server) recordAccess(c *gin.Context, p *auth.Principal, silent bool, interaction, query, resource string, t touched) error {
	if len(t) == 0 {
		return nil
	}
	if silent {
		for subject, x := range t {
			s.SecurityLog.LogAttrs(c.Request.Context(), slog.LevelInfo, "silent read",
				slog.String("request_id", requestIDOf(c)),
				slog.String("interaction", interaction),
				slog.String("route", c.FullPath()),
				slog.String("principal", p.Kind.String()),
				slog.String("user", p.UserID),
				slog.String("org", p.OrgCode),
				slog.String("subject_hash", s.subjectHash(subject)),
				slog.Int("plans", x.plans),
			)
		}
		return nil
	}
	now := s.now()
	subjects := make([]string, 0, len(t))
	for subject := range t {
		subjects = append(subjects, subject)
	}
	sort.Strings(subjects)
	recs := make([]store.AuditRecord, 0, len(t))
	for _, subject := range subjects {
		x := t[subject]
		a := profiles.Access{
			ID: s.NewID(), Recorded: now, Interaction: interaction, Query: query, Resource: resource,
			NHSNumber: subject, Results: x.plans,
			System: p.Kind == auth.System, UserName: p.Name, UserID: p.UserID, RoleID: p.RoleID, RoleName: p.RoleName,
			OrgCode: p.OrgCode, OrgName: p.OrgName, TraceID: traceIDOf(c),
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
	if err := s.Store.Audit(c.Request.Context(), recs); err != nil {
		return fhir.Wrap(fhir.CodeUnavailable, err, "The access could not be recorded, so no record is shown; try again shortly (request %s)", requestIDOf(c))
	}
	return nil
}

// subjectHash is a keyed hash of an NHS number, so security-log lines about
// one patient can be correlated without the log holding the number.
func (s *Server) subjectHash(subject string) string {
	m := hmac.New(sha256.New, s.SubjectKey)
	m.Write([]byte(subject))
	return hex.EncodeToString(m.Sum(nil)[:12])
}
