package handlers

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"cpis/fhir"
	"cpis/handlers/registry"
	"cpis/store"
)

// FHIR Bulk Data Access (system level $export), the async pattern: a
// kick-off answers 202 with Content-Location, the status URL; polls answer
// 202 with X-Progress and Retry-After while the export runs, then 200 with
// the manifest; DELETE cancels; the files are served to the same client,
// with its token. The work and every check are the registry's.

// ndjsonMIME is the content type of the output files.
const ndjsonMIME = "application/fhir+ndjson"

// exportRetryAfter is the Retry-After (seconds) of a poll answered 202.
const exportRetryAfter = "2"

// exportStatusPath and exportFilePath are where a job's status and files
// are, below the FHIR base.
const (
	exportStatusPath = "/$export-status/"
	exportFilePath   = "/$export-file/"
)

// exportKickOff serves GET and POST [base]/$export.
func (s *Server) exportKickOff(c *gin.Context) error {
	if err := registry.MayExport(principal(c)); err != nil {
		return err
	}
	if !preferAsync(c.Request.Header.Values("Prefer")) {
		return fhir.Errorf(fhir.KindInvalidHeader, "A bulk export kick-off needs the header Prefer: respond-async")
	}
	params, err := s.exportParams(c)
	if err != nil {
		return err
	}
	req, err := parseExportParams(params)
	if err != nil {
		return err
	}
	req.Request = s.BaseURL + "/$export"
	if enc := params.Encode(); enc != "" {
		req.Request += "?" + enc
	}
	job, err := s.reg.StartExport(c.Request.Context(), caller(c, false), req)
	if err != nil {
		return err
	}
	c.Header("Content-Location", s.BaseURL+exportStatusPath+job.ID)
	s.writeJSON(c, http.StatusAccepted, outcomeJSON([]fhir.Issue{{Severity: "information", Type: "informational",
		Diagnostics: "The export has started; poll the URL in Content-Location with the same token"}}))
	return nil
}

// preferAsync reports whether a Prefer header asks for respond-async.
func preferAsync(values []string) bool {
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			p, _, _ = strings.Cut(p, ";")
			if strings.EqualFold(strings.TrimSpace(p), "respond-async") {
				return true
			}
		}
	}
	return false
}

// exportParams are the kick-off's parameters: the query of a GET, or the
// Parameters resource of a POST (valueString, valueInstant, valueCode).
func (s *Server) exportParams(c *gin.Context) (url.Values, error) {
	q := c.Request.URL.Query()
	q.Del("_format")
	q.Del("_pretty")
	if c.Request.Method != http.MethodPost {
		return q, nil
	}
	if len(q) > 0 {
		return nil, fhir.Errorf(fhir.KindInvalid, "A POST kick-off carries its parameters in a Parameters resource, not in the URL")
	}
	body, err := s.readBody(c, s.Limits.MaxResourceBytes)
	if err != nil {
		return nil, err
	}
	out := url.Values{}
	if len(strings.TrimSpace(string(body))) == 0 {
		return out, nil
	}
	var p struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name         string  `json:"name"`
			ValueString  *string `json:"valueString"`
			ValueInstant *string `json:"valueInstant"`
			ValueCode    *string `json:"valueCode"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.ResourceType != "Parameters" {
		return nil, fhir.Errorf(fhir.KindInvalid, "A POST kick-off's body must be a Parameters resource")
	}
	for i, prm := range p.Parameter {
		var v *string
		for _, x := range []*string{prm.ValueString, prm.ValueInstant, prm.ValueCode} {
			if x != nil {
				v = x
			}
		}
		if v == nil {
			return nil, fhir.At(fhir.KindInvalid, "Parameters.parameter["+strconv.Itoa(i)+"]", "Parameter %q needs a valueString, valueInstant or valueCode", clip(prm.Name))
		}
		out.Add(prm.Name, *v)
	}
	return out, nil
}

// parseExportParams checks the kick-off's parameters: _outputFormat (NDJSON
// only), _type (a comma-separated list of the types an export serves; any
// other type is 400), _since (a FHIR instant). Any other parameter of the
// specification (patient, _typeFilter, _elements, includeAssociatedData,
// _until) and any unknown one is 400: an export is never narrower or wider
// than asked without the client knowing.
func parseExportParams(q url.Values) (registry.ExportRequest, error) {
	var req registry.ExportRequest
	for name, vals := range q {
		switch name {
		case "_outputFormat":
			for _, v := range vals {
				switch strings.ReplaceAll(strings.TrimSpace(v), " ", "+") {
				case ndjsonMIME, "application/ndjson", "ndjson":
				default:
					return req, fhir.At(fhir.KindInvalid, "_outputFormat", "_outputFormat %q is not supported: this server writes application/fhir+ndjson", clip(v))
				}
			}
		case "_type":
			want := map[string]bool{}
			for _, v := range vals {
				for _, t := range strings.Split(v, ",") {
					t = strings.TrimSpace(t)
					if t == "" {
						continue
					}
					if !exportable(t) {
						return req, fhir.At(fhir.KindInvalid, "_type", "_type %q is not exported: the types are %s", clip(t), strings.Join(registry.ExportTypes(), ", "))
					}
					want[t] = true
				}
			}
			for _, t := range registry.ExportTypes() {
				if want[t] {
					req.Types = append(req.Types, t)
				}
			}
			if len(req.Types) == 0 {
				return req, fhir.At(fhir.KindInvalid, "_type", "_type names no type")
			}
		case "_since":
			if len(vals) != 1 {
				return req, fhir.At(fhir.KindInvalid, "_since", "_since may be given once")
			}
			t, err := parseInstant(vals[0])
			if err != nil {
				return req, fhir.At(fhir.KindInvalid, "_since", "_since must be a FHIR instant with a time zone, such as 2026-06-01T00:00:00Z")
			}
			req.Since = t
		default:
			return req, fhir.At(fhir.KindInvalid, name, "Parameter %q is not supported by this server's $export (it supports _type, _since and _outputFormat)", clip(name))
		}
	}
	return req, nil
}

func exportable(t string) bool {
	for _, x := range registry.ExportTypes() {
		if x == t {
			return true
		}
	}
	return false
}

// parseInstant reads a FHIR instant: a date-time to the second (or finer)
// with a zone. A "+" typed raw in a URL arrives as a space.
func parseInstant(v string) (time.Time, error) {
	v = strings.ReplaceAll(strings.TrimSpace(v), " ", "+")
	return time.Parse(time.RFC3339Nano, v)
}

// exportStatus serves GET on the status URL.
func (s *Server) exportStatus(c *gin.Context) error {
	job, err := s.reg.ExportStatus(c.Request.Context(), caller(c, false), c.Param("id"))
	if err != nil {
		return err
	}
	switch job.State {
	case registry.ExportRunning:
		c.Header("X-Progress", progressHeader(job.Progress))
		c.Header("Retry-After", exportRetryAfter)
		c.Status(http.StatusAccepted)
		return nil
	case registry.ExportFailed:
		return fhir.Errorf(fhir.KindInternal, "%s", job.Error)
	}
	c.Header("Expires", job.Expires.UTC().Format(http.TimeFormat))
	s.writeManifest(c, job)
	return nil
}

// progressHeader keeps X-Progress to printable ASCII, at most 100
// characters, as the specification bounds it.
func progressHeader(p string) string {
	b := []byte(p)
	for i, ch := range b {
		if ch < 0x20 || ch > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > 100 {
		b = b[:100]
	}
	return string(b)
}

// manifest is the completed export's manifest (not a FHIR resource).
type manifest struct {
	TransactionTime     string           `json:"transactionTime"`
	Request             string           `json:"request"`
	RequiresAccessToken bool             `json:"requiresAccessToken"`
	Output              []manifestOutput `json:"output"`
	Error               []manifestOutput `json:"error"`
}

type manifestOutput struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count"`
}

func (s *Server) writeManifest(c *gin.Context, job store.ExportJob) {
	m := manifest{TransactionTime: fhir.Instant(job.Created), Request: job.Request, RequiresAccessToken: true,
		Output: []manifestOutput{}, Error: []manifestOutput{}}
	for _, f := range job.Files {
		m.Output = append(m.Output, manifestOutput{Type: f.Type, URL: s.BaseURL + exportFilePath + job.ID + "/" + f.Name, Count: f.Count})
	}
	body, _ := json.Marshal(m) // strings, ints and a bool: cannot fail
	c.Data(http.StatusOK, "application/json", body)
}

// exportCancel serves DELETE on the status URL: the job and its files go.
func (s *Server) exportCancel(c *gin.Context) error {
	if err := s.reg.CancelExport(c.Request.Context(), caller(c, false), c.Param("id")); err != nil {
		return err
	}
	s.writeJSON(c, http.StatusAccepted, outcomeJSON([]fhir.Issue{{Severity: "information", Type: "informational",
		Diagnostics: "The export was cancelled and its files removed"}}))
	return nil
}

// exportFile serves one output file, streamed from the store.
func (s *Server) exportFile(c *gin.Context) error {
	rc, f, err := s.reg.ExportFile(c.Request.Context(), caller(c, false), c.Param("id"), c.Param("name"))
	if err != nil {
		return err
	}
	defer rc.Close()
	c.Header("Content-Type", ndjsonMIME)
	c.Header("Content-Length", strconv.FormatInt(f.Size, 10))
	c.Status(http.StatusOK)
	if _, err := io.Copy(c.Writer, rc); err != nil {
		// Headers are sent: the client sees a short body, the log why.
		s.Log.Warn("export file download broke off", slog.String("request_id", requestIDOf(c)), slog.String("error", err.Error()))
	}
	return nil
}

// exportNotOffered answers the patient- and group-level kick-offs.
func (s *Server) exportNotOffered(c *gin.Context) error {
	return fhir.Errorf(fhir.KindInvalid, "Only the system-level export is offered: GET %s/$export (a local authority's own records)", s.BaseURL)
}
