package profiles

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"cpis/fhir"
)

// ClientIDSystem identifies a local authority system by its token's client id.
const ClientIDSystem = Base + "/Id/client-id"

// TraceIDSystem identifies the request an access was made in by the TraceID
// header its client sent (the national CP-IS API's trace id).
const TraceIDSystem = Base + "/Id/trace-id"

// Access is one read or search of a patient's records, as the CP-IS
// AuditEvent profile records it.
type Access struct {
	ID          string
	Recorded    time.Time
	Interaction string // read, vread, history-instance or search-type
	Query       string // the request as made: Type?params or Type/id
	NHSNumber   string
	Resource    string // Type/id for reads
	Results     int    // plans found for this patient
	Silent      bool   // never stored: silent reads are not audited
	TraceID     string // the client's TraceID header, if it sent one

	// The user (or, for a system, the client) who accessed.
	System   bool
	UserName string
	UserID   string // SDS user id, or the system's client id
	RoleID   string // SDS role profile id (the token's selected_roleid)
	RoleName string
	RoleCode string // the selected role's role_code, S…:G…:R… (recorded since CareTeam/PractitionerRole; "" in older AuditEvents)
	// The organisation they acted for.
	OrgCode string
	OrgName string
}

// auditEvent is an AuditEvent as the server writes it: of an access, or
// of a bulk export.
type auditEvent struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id"`
	Meta         fhir.Meta     `json:"meta"`
	Type         fhir.Coding   `json:"type"`
	Subtype      []fhir.Coding `json:"subtype"`
	Action       string        `json:"action"`
	Recorded     string        `json:"recorded"`
	Outcome      string        `json:"outcome"`
	OutcomeDesc  string        `json:"outcomeDesc,omitempty"`
	Agent        []auditAgent  `json:"agent"`
	Source       auditSource   `json:"source"`
	Entity       []auditEntity `json:"entity"`
}

type auditAgent struct {
	Type      *fhir.CodeableConcept  `json:"type,omitempty"`
	Role      []fhir.CodeableConcept `json:"role,omitempty"`
	Who       *fhir.Reference        `json:"who,omitempty"`
	AltID     string                 `json:"altId,omitempty"`
	Name      string                 `json:"name,omitempty"`
	Requestor bool                   `json:"requestor"`
}

type auditSource struct {
	Site     string         `json:"site"`
	Observer fhir.Reference `json:"observer"`
	Type     []fhir.Coding  `json:"type"`
}

type auditEntity struct {
	What        *fhir.Reference `json:"what,omitempty"`
	Type        *fhir.Coding    `json:"type,omitempty"`
	Role        *fhir.Coding    `json:"role,omitempty"`
	Description string          `json:"description,omitempty"`
	Query       string          `json:"query,omitempty"`
	Detail      []entityDetail  `json:"detail,omitempty"` // an export's counts
}

type entityDetail struct {
	Type        string `json:"type"`
	ValueString string `json:"valueString"`
}

// traceEntity names the TraceID of the request that caused an AuditEvent.
func traceEntity(traceID string) auditEntity {
	return auditEntity{
		What:        &fhir.Reference{Identifier: &fhir.Identifier{System: TraceIDSystem, Value: traceID}},
		Type:        &fhir.Coding{System: entityTypeSystem, Code: "2", Display: "System Object"},
		Description: "TraceID of the request",
	}
}

// encodeAuditEvent is the JSON of an AuditEvent the server made itself.
func encodeAuditEvent(e *auditEvent) []byte {
	b, err := fhir.Marshal(e)
	if err != nil {
		panic("profiles: encoding AuditEvent: " + err.Error())
	}
	return b
}

const (
	auditEventType   = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	restfulSystem    = "http://hl7.org/fhir/restful-interaction"
	roleClassSystem  = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
	dicomSystem      = "http://dicom.nema.org/resources/ontology/DCM"
	sourceTypeSystem = "http://terminology.hl7.org/CodeSystem/security-source-type"
	entityTypeSystem = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	objectRoleSystem = "http://terminology.hl7.org/CodeSystem/object-role"
)

// AuditEvent renders an access as a CP-IS AuditEvent.
func AuditEvent(a Access) []byte {
	e := auditEvent{
		ResourceType: "AuditEvent",
		ID:           a.ID,
		Meta:         fhir.Meta{VersionID: "1", LastUpdated: fhir.Instant(a.Recorded), Profile: []string{AuditEventProfile}},
		Type:         fhir.Coding{System: auditEventType, Code: "rest", Display: "RESTful Operation"},
		Subtype:      []fhir.Coding{{System: restfulSystem, Code: a.Interaction, Display: a.Interaction}},
		Action:       "R",
		Recorded:     fhir.Instant(a.Recorded),
		Outcome:      "0",
		Source: auditSource{
			Site:     "cpis",
			Observer: fhir.Reference{Display: "cpis FHIR server"},
			Type:     []fhir.Coding{{System: sourceTypeSystem, Code: "4", Display: "Application Server"}},
		},
	}
	if a.Interaction == "search-type" {
		e.Action = "E"
	}
	switch a.Results {
	case 0:
		e.OutcomeDesc = "No plan found"
	case 1:
		e.OutcomeDesc = "1 plan found"
	default:
		e.OutcomeDesc = strconv.Itoa(a.Results) + " plans found"
	}
	if a.System {
		e.Agent = append(e.Agent, auditAgent{
			Type:      &fhir.CodeableConcept{Coding: []fhir.Coding{{System: dicomSystem, Code: "110150", Display: "Application"}}},
			Who:       &fhir.Reference{Type: "Device", Identifier: &fhir.Identifier{System: ClientIDSystem, Value: a.UserID}, Display: a.OrgName},
			Name:      a.OrgName,
			Requestor: true,
		})
	} else {
		agent := auditAgent{
			Type:      &fhir.CodeableConcept{Coding: []fhir.Coding{{System: roleClassSystem, Code: "ASSIGNED", Display: "assigned entity"}}},
			Who:       &fhir.Reference{Type: "Practitioner", Identifier: &fhir.Identifier{System: fhir.SDSUserSystem, Value: a.UserID}, Display: a.UserName},
			AltID:     a.RoleID,
			Name:      a.UserName,
			Requestor: true,
		}
		if role := roleConcept(a.RoleCode, a.RoleName); role != nil {
			agent.Role = []fhir.CodeableConcept{*role}
		}
		e.Agent = append(e.Agent, agent)
	}
	e.Agent = append(e.Agent, auditAgent{
		Type:      &fhir.CodeableConcept{Coding: []fhir.Coding{{System: roleClassSystem, Code: "PROV", Display: "healthcare provider"}}},
		Who:       &fhir.Reference{Type: "Organization", Identifier: &fhir.Identifier{System: fhir.ODSSystem, Value: a.OrgCode}, Display: a.OrgName},
		Requestor: false,
	})
	if a.System {
		e.Agent[len(e.Agent)-1].Type = &fhir.CodeableConcept{Coding: []fhir.Coding{{System: roleClassSystem, Code: "GUARD", Display: "guardian"}}, Text: "Local authority"}
	}
	e.Entity = append(e.Entity, auditEntity{
		What: &fhir.Reference{Type: "Patient", Identifier: &fhir.Identifier{System: fhir.NHSNumberSystem, Value: a.NHSNumber}},
		Type: &fhir.Coding{System: entityTypeSystem, Code: "1", Display: "Person"},
		Role: &fhir.Coding{System: objectRoleSystem, Code: "1", Display: "Patient"},
	})
	if a.Resource != "" {
		e.Entity = append(e.Entity, auditEntity{
			What: &fhir.Reference{Reference: a.Resource},
			Type: &fhir.Coding{System: entityTypeSystem, Code: "2", Display: "System Object"},
			Role: &fhir.Coding{System: objectRoleSystem, Code: "4", Display: "Domain Resource"},
		})
	}
	if a.Query != "" {
		e.Entity = append(e.Entity, auditEntity{
			Type:        &fhir.Coding{System: entityTypeSystem, Code: "2", Display: "System Object"},
			Role:        &fhir.Coding{System: objectRoleSystem, Code: "24", Display: "Query"},
			Description: a.Interaction,
			Query:       base64.StdEncoding.EncodeToString([]byte(a.Query)),
		})
	}
	if a.TraceID != "" {
		e.Entity = append(e.Entity, traceEntity(a.TraceID))
	}
	return encodeAuditEvent(&e)
}

// RedactAuditEvent re-renders a stored AuditEvent without its outcome
// description (the count of plans found) and with its query passed through
// redact: how an access recorded before each local authority had its own
// view is shown to one of several authorities it touched.
func RedactAuditEvent(body []byte, redact func(query string) string) ([]byte, error) {
	var e auditEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("profiles: decoding a stored AuditEvent: %w", err)
	}
	e.OutcomeDesc = ""
	for i, en := range e.Entity {
		if en.Query == "" {
			continue
		}
		q, err := base64.StdEncoding.DecodeString(en.Query)
		if err != nil {
			return nil, fmt.Errorf("profiles: decoding a stored AuditEvent's query: %w", err)
		}
		e.Entity[i].Query = base64.StdEncoding.EncodeToString([]byte(redact(string(q))))
	}
	return fhir.Marshal(&e)
}
