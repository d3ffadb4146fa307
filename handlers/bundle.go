package handlers

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"cpis/auth"
	"cpis/fhir"
	"cpis/store"
)

// postBundle serves POST / with a transaction or batch Bundle: a local
// authority's uploads. Only local authority systems with a write scope may
// post Bundles; every entry is then checked as the single write would be.
func (s *Server) postBundle(c *gin.Context) {
	p := principal(c)
	if err := mayPostBundle(p); err != nil {
		s.fail(c, err)
		return
	}
	b, err := s.readBundle(c, p)
	if err != nil {
		s.fail(c, err)
		return
	}
	if b.typ == "transaction" {
		s.transaction(c, p, b)
		return
	}
	s.batch(c, p, b)
}

// mayPostBundle checks the caller is a local authority system allowed to
// write something; each entry's own type is checked as it is read.
func mayPostBundle(p *auth.Principal) error {
	if p.Kind != auth.System {
		return fhir.Errorf(fhir.CodeAccessDenied, "Access has been denied to process this request: health users cannot post Bundles")
	}
	if !p.Allows("EpisodeOfCare", auth.Write) && !p.Allows("Organization", auth.Write) {
		return fhir.Errorf(fhir.CodeAccessDenied, "Access has been denied to process this request: posting a Bundle needs system/EpisodeOfCare.write or system/Organization.write")
	}
	return nil
}

// transaction applies every entry or none: the entries are checked
// together (every problem is reported at once), resolved against the store,
// and written in one store commit with the Flags derived from them.
func (s *Server) transaction(c *gin.Context, p *auth.Principal, b *postedBundle) {
	var errs []*fhir.Error
	for _, e := range b.entries {
		if e.err != nil {
			errs = append(errs, e.err)
		}
	}
	if b.unchecked > 0 {
		// First, so that the cap on the answer's issues keeps it.
		errs = append([]*fhir.Error{{Status: http.StatusBadRequest, Issues: []fhir.Issue{{Severity: "information", Type: "informational",
			Diagnostics: fmt.Sprintf("%d further entries were not checked: the entries before them already have %d problems or more", b.unchecked, fhir.MaxIssues)}}}}, errs...)
	}
	errs = append(errs, duplicates(b.entries)...)
	errs = append(errs, references(b.entries)...)
	if err := joinErrors(errs); err != nil {
		s.fail(c, err)
		return
	}
	names := laNames{}
	for _, e := range b.entries {
		if e.in != nil && e.in.la != nil {
			names[e.in.la.ODS] = e.in.la.Name // the name it will have when the transaction is applied
		}
	}
	results, err := s.apply(c.Request.Context(), p, b.entries, names)
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
func (s *Server) batch(c *gin.Context, p *auth.Principal, b *postedBundle) {
	pref := returnPref(c)
	names := laNames{}
	out := &fhir.Bundle{Type: "batch-response", Timestamp: fhir.Instant(s.now())}
	shown := 0 // issues in the answer so far, bounded by batchIssueBudget
	for _, e := range b.entries {
		var results []entryResult
		var err error
		switch refErr := joinErrors(batchReferences(e)); {
		case e.err != nil:
			err = e.err
		case refErr != nil:
			err = refErr
		default:
			results, err = s.apply(c.Request.Context(), p, []*bundleEntry{e}, names)
		}
		if err != nil {
			fe := atEntry(e.index, "", s.outcome(c, err))
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
				Status: statusLine(fe.Status), Outcome: fhir.Outcome(issues).JSON(),
			}})
			continue
		}
		if e.in != nil && e.in.la != nil {
			names[e.in.la.ODS] = e.in.la.Name
		}
		out.Entry = append(out.Entry, s.resultEntry(results[0], pref))
	}
	s.writeBundle(c, out)
}

// batchIssueBudget bounds the problems one batch-response lists in full;
// beyond it each failed entry shows its first problem and a count.
const batchIssueBudget = 10 * fhir.MaxIssues

// entryResult is what one applied entry did.
type entryResult struct {
	rec     store.Record // the version written, or the current one if nothing was
	status  int          // 200 or 201
	deleted bool
	note    string // the informational outcome
}

// resultEntry is the response entry of an applied entry, with the resource
// or an OperationOutcome as Prefer: return= asks.
func (s *Server) resultEntry(r entryResult, pref string) fhir.Entry {
	e := fhir.Entry{FullURL: s.fullURL(r.rec.Type, r.rec.ID), Response: &fhir.EntryResponse{
		Status: statusLine(r.status), Etag: etag(r.rec.Version), LastModified: fhir.Instant(r.rec.Updated),
	}}
	if !r.deleted {
		e.Response.Location = s.location(r.rec)
	}
	switch {
	case pref == "minimal":
	case pref == "OperationOutcome" || r.deleted:
		e.Response.Outcome = fhir.Outcome([]fhir.Issue{{Severity: "information", Type: "informational", Diagnostics: r.note}}).JSON()
	default:
		e.Resource = r.rec.Body
	}
	return e
}

func statusLine(code int) string { return strconv.Itoa(code) + " " + http.StatusText(code) }

// joinErrors gathers the problems of several entries into one error whose
// status is the lowest of theirs (a 400 before a 403 before a 422); nil if
// there are none.
func joinErrors(errs []*fhir.Error) *fhir.Error {
	if len(errs) == 0 {
		return nil
	}
	out := &fhir.Error{Status: errs[0].Status}
	var issues fhir.Collector // a Bundle's problems are bounded like any answer's
	for _, e := range errs {
		if e.Status < out.Status {
			out.Status = e.Status
		}
		issues.AddAll(e.Issues)
		if out.Err == nil {
			out.Err = e.Err
		}
	}
	out.Issues = issues.Issues()
	return out
}

// entryPath is the FHIRPath of entry i.
func entryPath(i int) string { return fmt.Sprintf("Bundle.entry[%d]", i) }

// atEntry points err's issues into Bundle.entry[i]: expressions about the
// entry's resource (EpisodeOfCare.patient…) become
// Bundle.entry[i].resource.patient…, issues without one name the entry.
// Expressions already in the Bundle are kept.
func atEntry(i int, typ string, err *fhir.Error) *fhir.Error {
	prefix := entryPath(i)
	out := &fhir.Error{Status: err.Status, Err: err.Err, Issues: make([]fhir.Issue, len(err.Issues))}
	for j, is := range err.Issues {
		if len(is.Expression) == 0 {
			is.Expression = []string{prefix}
		} else {
			ex := make([]string, len(is.Expression))
			for k, x := range is.Expression {
				switch {
				case len(x) >= 7 && x[:7] == "Bundle.":
					ex[k] = x
				case typ != "" && x == typ:
					ex[k] = prefix + ".resource"
				case typ != "" && len(x) > len(typ) && x[:len(typ)+1] == typ+".":
					ex[k] = prefix + ".resource" + x[len(typ):]
				default:
					ex[k] = prefix + ".resource." + x
				}
			}
			is.Expression = ex
		}
		out.Issues[j] = is
	}
	return out
}

// atRequest points err's issues at one element of entry i's request.
func atRequest(i int, element string, err error) *fhir.Error {
	fe := asError(err)
	out := &fhir.Error{Status: fe.Status, Err: fe.Err}
	for _, is := range fe.Issues {
		is.Expression = []string{entryPath(i) + ".request." + element}
		out.Issues = append(out.Issues, is)
	}
	return out
}
