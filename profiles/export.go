package profiles

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"cpis/fhir"
)

// ExportCount is how many resources of one type a bulk export disclosed.
type ExportCount struct {
	Type  string
	Count int
}

// ExportAccess is one bulk export ($export) by a local authority system:
// a disclosure of many children's records at once, recorded as one
// AuditEvent that names the authority and the counts, and no patient.
type ExportAccess struct {
	ID       string
	Recorded time.Time
	ClientID string // the system's client id (token sub)
	OrgCode  string
	OrgName  string
	Request  string // the kick-off request as the manifest names it
	JobID    string
	Counts   []ExportCount
	TraceID  string
}

// ExportJobSystem identifies a bulk export job by its id.
const ExportJobSystem = Base + "/Id/export-job"

// ExportAuditEvent renders a bulk export as an R4 AuditEvent: a RESTful
// operation by the authority's system, with an entity for the request (the
// query, base64 as AuditEvent.entity.query is) and one per exported type
// with its count. It is not a CPIS-AuditEvent (that profile records one
// patient's access) and claims no profile.
func ExportAuditEvent(a ExportAccess) []byte {
	total := 0
	var parts []string
	for _, c := range a.Counts {
		total += c.Count
		parts = append(parts, c.Type+" "+strconv.Itoa(c.Count))
	}
	desc := "Bulk export of " + strconv.Itoa(total) + " resources"
	if len(parts) > 0 {
		desc += ": " + strings.Join(parts, ", ")
	}
	e := auditEvent{
		ResourceType: "AuditEvent",
		ID:           a.ID,
		Meta:         fhir.Meta{VersionID: "1", LastUpdated: fhir.Instant(a.Recorded)},
		Type:         fhir.Coding{System: auditEventType, Code: "rest", Display: "RESTful Operation"},
		Subtype:      []fhir.Coding{{System: restfulSystem, Code: "operation", Display: "operation"}},
		Action:       "E",
		Recorded:     fhir.Instant(a.Recorded),
		Outcome:      "0",
		OutcomeDesc:  desc,
		Agent: []auditAgent{{
			Type:      &fhir.CodeableConcept{Coding: []fhir.Coding{{System: dicomSystem, Code: "110150", Display: "Application"}}},
			Who:       &fhir.Reference{Type: "Device", Identifier: &fhir.Identifier{System: ClientIDSystem, Value: a.ClientID}, Display: a.OrgName},
			Name:      a.OrgName,
			Requestor: true,
		}, {
			Type:      &fhir.CodeableConcept{Coding: []fhir.Coding{{System: roleClassSystem, Code: "GUARD", Display: "guardian"}}, Text: "Local authority"},
			Who:       &fhir.Reference{Type: "Organization", Identifier: &fhir.Identifier{System: fhir.ODSSystem, Value: a.OrgCode}, Display: a.OrgName},
			Requestor: false,
		}},
		Source: auditSource{
			Site:     "cpis",
			Observer: fhir.Reference{Display: "cpis FHIR server"},
			Type:     []fhir.Coding{{System: sourceTypeSystem, Code: "4", Display: "Application Server"}},
		},
	}
	e.Entity = append(e.Entity, auditEntity{
		What:        &fhir.Reference{Identifier: &fhir.Identifier{System: ExportJobSystem, Value: a.JobID}},
		Type:        &fhir.Coding{System: entityTypeSystem, Code: "2", Display: "System Object"},
		Role:        &fhir.Coding{System: objectRoleSystem, Code: "24", Display: "Query"},
		Description: "$export",
		Query:       base64.StdEncoding.EncodeToString([]byte(a.Request)),
	})
	for _, c := range a.Counts {
		e.Entity = append(e.Entity, auditEntity{
			Type:        &fhir.Coding{System: entityTypeSystem, Code: "2", Display: "System Object"},
			Role:        &fhir.Coding{System: objectRoleSystem, Code: "4", Display: "Domain Resource"},
			Description: c.Type,
			Detail:      []entityDetail{{Type: "count", ValueString: strconv.Itoa(c.Count)}},
		})
	}
	if a.TraceID != "" {
		e.Entity = append(e.Entity, traceEntity(a.TraceID))
	}
	return encodeAuditEvent(&e)
}
