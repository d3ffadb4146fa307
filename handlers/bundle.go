package handlers

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"cpis/fhir"
	"cpis/handlers/registry"
)

// postBundle serves POST / with a transaction or batch Bundle: a local
// authority's uploads. Only local authority systems with a write scope may
// post Bundles; every entry is then checked as the single write would be.
func (s *Server) postBundle(c *gin.Context) {
	p := principal(c)
	if err := registry.MayPostBundle(p); err != nil {
		s.fail(c, err)
		return
	}
	b, err := s.readBundle(c, p)
	if err != nil {
		s.fail(c, err)
		return
	}
	if b.typ == "transaction" {
		s.transaction(c, b)
		return
	}
	s.batch(c, b)
}

// transaction applies every entry or none: the entries are checked
// together (every problem is reported at once), then the registry resolves
// them against the store and writes them in one store commit with the Flags
// derived from them.
func (s *Server) transaction(c *gin.Context, b *postedBundle) {
	var errs []*fhir.Error
	for _, e := range b.entries {
		if e.err != nil {
			errs = append(errs, fhir.As(e.err))
		}
	}
	if b.unchecked > 0 {
		// First, so that the cap on the answer's issues keeps it.
		errs = append([]*fhir.Error{{Kind: fhir.KindInvalid, Issues: []fhir.Issue{{Severity: "information", Type: "informational",
			Diagnostics: fmt.Sprintf("%d further entries were not checked: the entries before them already have %d problems or more", b.unchecked, fhir.MaxIssues)}}}}, errs...)
	}
	errs = append(errs, duplicates(b.entries)...)
	errs = append(errs, references(b.entries)...)
	if err := fhir.Join(errs...); err != nil {
		s.fail(c, err)
		return
	}
	changes := make([]registry.Change, len(b.entries))
	for i, e := range b.entries {
		changes[i] = e.change()
	}
	results, err := s.reg.Apply(c.Request.Context(), caller(c, false), changes, registry.Transaction)
	if err != nil {
		s.fail(c, err)
		return
	}
	pref := returnPref(c)
	out := &fhir.Bundle{Type: "transaction-response", Timestamp: fhir.Instant(s.now())}
	for _, r := range results {
		out.Entry = append(out.Entry, s.resultEntry(r, pref))
	}
	s.writeBundle(c, out)
}

// batch applies each entry on its own, in order: its own checks and its own
// store commit. A failed entry answers with its status and an
// OperationOutcome; the others are applied regardless.
func (s *Server) batch(c *gin.Context, b *postedBundle) {
	pref := returnPref(c)
	errs := make([]error, len(b.entries))
	var changes []registry.Change
	var applied []int
	for i, e := range b.entries {
		switch refErr := fhir.Join(batchReferences(e)...); {
		case e.err != nil:
			errs[i] = e.err
		case refErr != nil:
			errs[i] = refErr
		default:
			changes = append(changes, e.change())
			applied = append(applied, i)
		}
	}
	results := make([]registry.Result, len(b.entries))
	if len(changes) > 0 {
		done, err := s.reg.Apply(c.Request.Context(), caller(c, false), changes, registry.Batch)
		if err != nil {
			s.fail(c, err)
			return
		}
		for k, i := range applied {
			results[i], errs[i] = done[k], done[k].Err
		}
	}
	out := &fhir.Bundle{Type: "batch-response", Timestamp: fhir.Instant(s.now())}
	shown := 0 // issues in the answer so far, bounded by batchIssueBudget
	for i, e := range b.entries {
		if errs[i] != nil {
			fe := fhir.As(fhir.Under(entryPath(e.index), "", s.outcome(c, errs[i])))
			issues := fhir.Capped(fe.Issues)
			if shown >= batchIssueBudget && len(issues) > 1 {
				// The answer already lists batchIssueBudget problems: from
				// here on each failed entry shows its first, and a count.
				var rest fhir.Collector
				rest.AddAll(issues[1:])
				issues = []fhir.Issue{issues[0], {Severity: "information", Type: "informational", More: rest.Len(),
					Diagnostics: fmt.Sprintf("%d further problems with this entry not shown: the answer to one batch lists at most about %d", rest.Len(), batchIssueBudget)}}
			}
			shown += len(issues)
			out.Entry = append(out.Entry, fhir.Entry{Response: &fhir.EntryResponse{
				Status: statusLine(row(fe.Kind).status), Outcome: outcomeJSON(issues),
			}})
			continue
		}
		out.Entry = append(out.Entry, s.resultEntry(results[i], pref))
	}
	s.writeBundle(c, out)
}

// batchIssueBudget bounds the problems one batch-response lists in full;
// beyond it each failed entry shows its first problem and a count.
const batchIssueBudget = 10 * fhir.MaxIssues

// resultEntry is the response entry of an applied entry, with the resource
// or an OperationOutcome as Prefer: return= asks; a plan's data-quality
// warnings come in the OperationOutcome whatever Prefer asks.
func (s *Server) resultEntry(r registry.Result, pref string) fhir.Entry {
	e := fhir.Entry{FullURL: s.fullURL(r.Rec.Type, r.Rec.ID), Response: &fhir.EntryResponse{
		Status: statusLine(r.Status), Etag: etag(r.Rec.Version), LastModified: fhir.Instant(r.Rec.Updated),
	}}
	if !r.Deleted {
		e.Response.Location = s.location(r.Rec)
	}
	switch {
	case pref == "minimal":
	case pref == "OperationOutcome" || r.Deleted:
		e.Response.Outcome = resultOutcome(r)
	default:
		e.Resource = r.Rec.Body
	}
	if len(r.Warnings) > 0 {
		// Whatever Prefer asks, an entry's data-quality warnings are
		// shown: the uploader must see them.
		e.Response.Outcome = resultOutcome(r)
	}
	return e
}

func statusLine(code int) string { return strconv.Itoa(code) + " " + http.StatusText(code) }

// entryPath is the FHIRPath of entry i.
func entryPath(i int) string { return fmt.Sprintf("Bundle.entry[%d]", i) }

// atRequest points err's issues at one element of entry i's request.
func atRequest(i int, element string, err error) *fhir.Error {
	fe := asError(err)
	out := &fhir.Error{Kind: fe.Kind, Err: fe.Err}
	for _, is := range fe.Issues {
		is.Expression = []string{entryPath(i) + ".request." + element}
		out.Issues = append(out.Issues, is)
	}
	return out
}
