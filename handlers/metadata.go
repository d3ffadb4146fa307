package handlers

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"cpis/auth"
	"cpis/fhir"
	"cpis/handlers/notify"
)

type capabilityStatement struct {
	ResourceType   string           `json:"resourceType"`
	ID             string           `json:"id"`
	URL            string           `json:"url"`
	Version        string           `json:"version"`
	Name           string           `json:"name"`
	Title          string           `json:"title"`
	Status         string           `json:"status"`
	Experimental   bool             `json:"experimental"`
	Date           string           `json:"date"`
	Publisher      string           `json:"publisher"`
	Description    string           `json:"description"`
	Kind           string           `json:"kind"`
	Software       csSoftware       `json:"software"`
	Implementation csImplementation `json:"implementation"`
	FHIRVersion    string           `json:"fhirVersion"`
	Format         []string         `json:"format"`
	PatchFormat    []string         `json:"patchFormat,omitempty"`
	Rest           []csRest         `json:"rest"`
}

type csSoftware struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type csImplementation struct {
	Description string `json:"description"`
	URL         string `json:"url"`
}

type csRest struct {
	Mode          string          `json:"mode"`
	Documentation string          `json:"documentation"`
	Security      csSecurity      `json:"security"`
	Resource      []csResource    `json:"resource"`
	Interaction   []csInteraction `json:"interaction,omitempty"`
	Operation     []csOperation   `json:"operation,omitempty"`
}

type csSecurity struct {
	CORS        bool                   `json:"cors"`
	Service     []fhir.CodeableConcept `json:"service"`
	Description string                 `json:"description"`
}

type csResource struct {
	Extension         []csExtension   `json:"extension,omitempty"`
	Type              string          `json:"type"`
	Profile           string          `json:"profile,omitempty"`
	SupportedProfile  []string        `json:"supportedProfile,omitempty"`
	Documentation     string          `json:"documentation,omitempty"`
	Interaction       []csInteraction `json:"interaction"`
	Versioning        string          `json:"versioning,omitempty"`
	ReadHistory       bool            `json:"readHistory"`
	UpdateCreate      bool            `json:"updateCreate"`
	ConditionalCreate bool            `json:"conditionalCreate"`
	ConditionalRead   string          `json:"conditionalRead"`
	ConditionalUpdate bool            `json:"conditionalUpdate"`
	ConditionalDelete string          `json:"conditionalDelete"`
	SearchInclude     []string        `json:"searchInclude,omitempty"`
	SearchParam       []csSearchParam `json:"searchParam,omitempty"`
	Operation         []csOperation   `json:"operation,omitempty"`
}

type csExtension struct {
	URL            string `json:"url"`
	ValueCanonical string `json:"valueCanonical"`
}

type csInteraction struct {
	Code          string `json:"code"`
	Documentation string `json:"documentation,omitempty"`
}

type csSearchParam struct {
	Name          string `json:"name"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

type csOperation struct {
	Name          string `json:"name"`
	Definition    string `json:"definition"`
	Documentation string `json:"documentation,omitempty"`
}

// interactionDoc documents the interactions that need a word.
var interactionDoc = map[string]string{
	"read": "ETag W/\"versionId\" and Last-Modified. Conditional read: If-None-Match naming the current version (or *), or without it " +
		"If-Modified-Since at or after Last-Modified, is 304 Not Modified with no body. A read of a record about a patient, a 304 and a HEAD " +
		"included, is audited before the answer (it tells the caller the record exists). A Flag whose plan has ended (shown inactive, same " +
		"version) and a CareTeam (rendered with its authority's current numbers) are always answered in full.",
	"patch": "JSON Patch (RFC 6902, Content-Type application/json-patch+json; FHIRPath Patch is not supported, 415) by the managing local " +
		"authority: the patch is applied to the current version and the result is validated and written like a PUT (another authority's id " +
		"is 404; a result naming another authority is 403; one that breaks the profile is 422 with every problem; a failing test operation, " +
		"or an operation whose path is not in the resource, is 422 and nothing changes; a malformed patch or an unknown op is 400). " +
		"If-Match is honoured (412); without it the write is pinned to the version patched, so a write in between is 412, never lost. " +
		"At most 100 operations; the patch and its result are bounded like a single resource. Not accepted in Bundles.",
}

// capabilityStatement describes what the server really serves: built from
// the same resource specs the handlers use.
func (s *Server) capabilityStatement() []byte {
	security := "Every request but GET /metadata needs Authorization: Bearer <JWT>, signed RS256, RS512, PS256 or ES256 (never none or HMAC), " +
		"with exp (required), nbf and iat honoured with 60 s leeway, and iss and aud matching the server's configuration. " +
		"Health professionals use NHS CIS2 user tokens: the role whose person_roleid equals selected_roleid counts, and its activity codes grant " +
		"B0107 (reads that notify the local authority) or B0170 (silent reads only). Local authority systems use system tokens with org_code and SMART " +
		"system scopes (system/EpisodeOfCare.write, system/EpisodeOfCare.read, system/Flag.read, system/Organization.write, system/Organization.read, " +
		"system/AuditEvent.read, system/DataQuality.read for $data-quality, system/Subscription.* for notification subscriptions, system/Export.read for $export; .* and v2 .cruds forms accepted). " +
		"A CareTeam is the Flag as the national CP-IS API serves it: reading it needs what reading the Flag needs (B0107 or B0170, system/Flag.read); there is no CareTeam scope. A local authority reads and writes only what it manages. " +
		"The CP-IS definitions (StructureDefinition, CodeSystem, ValueSet) and $validate need only a valid token of either kind."
	if len(s.corsOrigins) > 0 {
		security += fmt.Sprintf(" Browser apps may call the API from %d configured origin(s) (CORS); preflights need no token.", len(s.corsOrigins))
	} else {
		security += " CORS is off: browser apps on other origins cannot call the API."
	}
	if s.LocalMode {
		security += " This server runs in local mode: tokens are self-issued with `cpis token` (issuer " + auth.LocalIssuer + ")."
	}
	limits := fmt.Sprintf("JSON only (application/fhir+json). Limits: single resource body %d bytes; Bundle body %d bytes and %d entries; "+
		"search _count default %d, maximum %d; a $validate body is bounded like a single resource. Unknown search parameters are ignored (reported in an OperationOutcome entry) unless the request "+
		"sends Prefer: handling=strict, which makes them a 400. Searches may also be POSTed to [type]/_search as a form, keeping NHS numbers out of URLs. "+
		"Plans whose period ended more than %d days ago are not served and are purged with their Flags, history and access history. "+
		"_format accepts json, application/json and application/fhir+json (with fhirVersion=4.0). Answers of 1 KiB or more are gzipped for clients "+
		"that send Accept-Encoding: gzip; request bodies may be sent with Content-Encoding: gzip (the limits count the decompressed bytes). "+
		"Request headers (with the request line) are limited to %d bytes (431). Headers: X-Request-ID (echoed, or made), X-Correlation-ID and "+
		"TraceID (1 to 128 printable ASCII characters) are echoed, and TraceID is recorded in the AuditEvent of an audited read; "+
		"IsUnscheduledAccessEvent: true (or absent) is an unscheduled read that is audited and notifies the local authority, false a scheduled, silent "+
		"read (B0170); any other value is 400 PRECONDITION_FAILED. "+
		"Every GET is also served as HEAD: the same checks, audit and headers, without the body. "+
		"Reads and searches take _summary (true, text, data, false; count for searches) and _elements (top-level element names): "+
		"the id, meta and the elements R4 makes mandatory are always kept, and a resource with anything left out carries the meta.tag "+
		fhir.SubsettedSystem+"|"+fhir.SubsettedCode+"; a write (PUT, POST, PATCH result, Bundle entry) carrying that tag is refused with 422. "+
		"_revinclude and _include values a type does not offer are reported like unknown parameters.",
		s.Limits.MaxResourceBytes, s.Limits.MaxBundleBytes, s.Limits.MaxBundleEntries, fhir.DefaultCount, fhir.MaxCount, s.RetentionDays, s.Limits.MaxHeaderBytes)
	if s.RequestTimeout > 0 {
		limits += fmt.Sprintf(" A request still running after %s is answered 503 SERVICE_UNAVAILABLE.", s.RequestTimeout)
	}
	bundleLimits := fmt.Sprintf("At most %d entries and %d bytes; more is refused with 413 and nothing is written.", s.Limits.MaxBundleEntries, s.Limits.MaxBundleBytes)
	rest := csRest{
		Mode:          "server",
		Documentation: limits,
		Interaction: []csInteraction{
			{Code: "transaction", Documentation: "POST a transaction Bundle to the base (local authority systems with a write scope): PUT EpisodeOfCare/{id} or " +
				"EpisodeOfCare?identifier=system|value, DELETE EpisodeOfCare/{id}, PUT Organization/{id} or Organization?identifier=, and POST Type " +
				"(ifNoneExist: identifier=system|value). All entries are applied, with their Flags, or none: any problem leaves the store untouched and the " +
				"answer is one OperationOutcome naming each failing entry (Bundle.entry[n]). request.ifMatch is honoured. An entry may not name a resource " +
				"another entry names. References to another entry's urn:uuid fullUrl become Type/id; conditional references are not supported. An update " +
				"whose content equals the current version writes nothing and keeps its version. " + bundleLimits},
			{Code: "batch", Documentation: "POST a batch Bundle to the base: the same entries, each checked and applied on its own, with a response entry " +
				"each (an OperationOutcome in response.outcome for a failure). Entries cannot refer to each other. Read (GET) entries are refused with 405: " +
				"read and search with their own requests. " + bundleLimits},
		},
		Operation: []csOperation{{Name: dataQualityOp.Name, Definition: dataQualityOp.Definition, Documentation: dataQualityOp.Doc},
			{Name: exportOp.Name, Definition: exportOp.Definition, Documentation: exportOp.Doc}},
		Security: csSecurity{
			CORS: len(s.corsOrigins) > 0,
			Service: []fhir.CodeableConcept{{Coding: []fhir.Coding{{
				System: "http://terminology.hl7.org/CodeSystem/restful-security-service", Code: "SMART-on-FHIR", Display: "SMART-on-FHIR",
			}}}},
			Description: security,
		},
	}
	for _, sp := range specs() {
		r := csResource{
			Type: sp.Type, Profile: sp.Profile, Documentation: sp.Doc,
			ConditionalRead: "not-supported", ConditionalDelete: "not-supported", SearchInclude: sp.Includes,
		}
		for _, i := range sp.Interactions {
			doc := ""
			if !sp.AnyToken {
				doc = interactionDoc[i]
			}
			r.Interaction = append(r.Interaction, csInteraction{Code: i, Documentation: doc})
			switch i {
			case "read":
				if sp.Type != "CareTeam" && !sp.AnyToken {
					r.ConditionalRead = "full-support"
				}
			case "update":
				r.UpdateCreate, r.ConditionalUpdate = true, true
				r.Versioning = "versioned-update"
			case "create":
				r.ConditionalCreate = true
			case "history-instance":
				r.ReadHistory = true
			}
		}
		for _, t := range sp.Topics {
			r.Extension = append(r.Extension, csExtension{URL: notify.TopicExtension, ValueCanonical: t})
			r.ConditionalCreate, r.ConditionalUpdate = false, false
		}
		if r.Versioning == "" && r.ReadHistory {
			r.Versioning = "versioned"
		}
		for _, p := range sp.Params {
			doc := p.Doc
			if len(p.Accepted) > 1 || p.Accepted[0] != p.Name {
				doc += " Written as " + strings.Join(p.Accepted, ", ") + "."
			}
			r.SearchParam = append(r.SearchParam, csSearchParam{Name: p.Name, Type: p.Type, Documentation: doc})
		}
		if sp.Profile != "" {
			r.SupportedProfile = []string{sp.Profile}
		}
		for _, op := range sp.Operations {
			r.Operation = append(r.Operation, csOperation{Name: op.Name, Definition: op.Definition, Documentation: op.Doc})
		}
		rest.Resource = append(rest.Resource, r)
	}
	cs := capabilityStatement{
		ResourceType: "CapabilityStatement", ID: "cpis", URL: s.BaseURL + "/metadata", Version: s.Version,
		Name: "CPISServer", Title: "CP-IS FHIR server", Status: "active", Date: s.started,
		Publisher:   "cpis",
		Description: "Child protection information sharing: local authorities upload plans; NHS care settings find the alert by NHS number; every access is audited.",
		Kind:        "instance",
		Software:    csSoftware{Name: "cpis", Version: s.Version},
		Implementation: csImplementation{
			Description: "cpis FHIR R4 server", URL: s.BaseURL,
		},
		FHIRVersion: fhir.Version,
		Format:      []string{fhir.MIME, "json"},
		PatchFormat: []string{jsonPatchMIME},
		Rest:        []csRest{rest},
	}
	b, err := fhir.Marshal(cs)
	if err != nil {
		panic("handlers: encoding CapabilityStatement: " + err.Error())
	}
	return b
}

// metadata serves GET /metadata, without a token.
func (s *Server) metadata(c *gin.Context) {
	s.writeJSON(c, http.StatusOK, s.capabilityDoc)
}
