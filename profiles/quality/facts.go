package quality

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"cpis/fhir"
	"cpis/profiles"
)

// PlanFactsOf is the facts of a parsed plan (profiles.ParsePlan) whose
// version was written at updated. For a deleted plan, pass its last live
// version and set Deleted and Updated (the deletion time) on the result.
func PlanFactsOf(p *profiles.Plan, updated time.Time) PlanFacts {
	return PlanFacts{ID: p.ID, NHSNumber: p.NHSNumber, Type: p.Type, Status: p.Status, Start: p.Start, End: p.End,
		Updated: updated, Identifiers: p.Keys()}
}

// storedPlan is the part of a stored EpisodeOfCare the rules read: the
// elements profiles.ParsePlan reads for them, decoded into a struct so the
// rest of the body (meta, managingOrganization, …) is skipped, not built
// into maps. The body was validated as R4 when written, so its element
// names are exact (encoding/json would match them case-insensitively).
type storedPlan struct {
	ResourceType string            `json:"resourceType"`
	ID           string            `json:"id"`
	Status       string            `json:"status"`
	Identifier   []fhir.Identifier `json:"identifier"`
	Type         []struct {
		Coding []fhir.Coding `json:"coding"`
	} `json:"type"`
	Patient struct {
		Identifier struct {
			Value string `json:"value"`
		} `json:"identifier"`
	} `json:"patient"`
	Period struct {
		Start string `json:"start"`
		End   string `json:"end"`
	} `json:"period"`
}

// ParsePlanFacts reads the facts out of a stored EpisodeOfCare body (as the
// store serves it: validated when it was written), written at updated.
// Dates without a time are read in loc, as profiles.ParsePlan reads them;
// the facts are those PlanFactsOf(profiles.ParsePlan(…)) gives (a test
// checks). It reads the body in one pass without encoding/json
// (scanPlanFacts), and with encoding/json only a body that pass is not
// sure of.
func ParsePlanFacts(body []byte, updated time.Time, loc *time.Location) (PlanFacts, error) {
	if p, ok := scanPlanFacts(body, updated, loc); ok {
		return p, nil
	}
	return decodePlanFacts(body, updated, loc)
}

// decodePlanFacts is ParsePlanFacts through encoding/json: the reading
// scanPlanFacts must agree with, and the one it falls back to.
func decodePlanFacts(body []byte, updated time.Time, loc *time.Location) (PlanFacts, error) {
	var sp storedPlan
	if err := json.Unmarshal(body, &sp); err != nil {
		return PlanFacts{}, fmt.Errorf("quality: reading a stored EpisodeOfCare: %w", err)
	}
	if sp.ResourceType != "EpisodeOfCare" {
		return PlanFacts{}, fmt.Errorf("quality: a stored body is a %q, not an EpisodeOfCare", sp.ResourceType)
	}
	p := PlanFacts{ID: sp.ID, NHSNumber: sp.Patient.Identifier.Value, Status: sp.Status, Updated: updated,
		Identifiers: make([]string, 0, len(sp.Identifier))}
	for _, id := range sp.Identifier {
		p.Identifiers = append(p.Identifiers, id.Token())
	}
	if len(sp.Type) > 0 {
		for _, c := range sp.Type[0].Coding {
			if pt, ok := profiles.PlanTypeOf(c); ok {
				p.Type = pt
				break
			}
		}
	}
	if sp.Period.Start != "" || sp.Period.End != "" {
		p.Start, _, _ = fhir.ParseDateTime(sp.Period.Start, loc)
		if sp.Period.End != "" {
			_, p.End, _ = fhir.ParseDateTime(sp.Period.End, loc)
		}
	}
	return p, nil
}

// ParseOrgFacts reads the facts out of a stored Organization body written
// at updated: its phone numbers by contact purpose.
func ParseOrgFacts(body []byte, updated time.Time) (*OrgFacts, error) {
	res, err := stored(body, "Organization")
	if err != nil {
		return nil, err
	}
	org := &OrgFacts{ID: res.ID(), Updated: updated}
	contacts, _ := res.Fields["contact"].([]any)
	for _, c := range contacts {
		cm, _ := c.(map[string]any)
		purpose, _ := cm["purpose"].(map[string]any)
		var office, edt bool
		codings, _ := purpose["coding"].([]any)
		for _, cd := range codings {
			m, _ := cd.(map[string]any)
			if m["system"] == profiles.ContactPurposeSystem {
				office = office || m["code"] == profiles.ContactOfficeHours
				edt = edt || m["code"] == profiles.ContactEmergencyDuty
			}
		}
		telecoms, _ := cm["telecom"].([]any)
		for _, t := range telecoms {
			tm, _ := t.(map[string]any)
			v, _ := tm["value"].(string)
			if tm["system"] != "phone" || v == "" {
				continue
			}
			if office {
				org.OfficeHours = append(org.OfficeHours, v)
			}
			if edt {
				org.EmergencyDuty = append(org.EmergencyDuty, v)
			}
		}
	}
	return org, nil
}

// stored decodes a stored body into the tree profiles reads. It was
// validated when written, so it is read with encoding/json only (no second
// validation: the report reads thousands of them).
func stored(body []byte, typ string) (*fhir.Resource, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil {
		return nil, fmt.Errorf("quality: reading a stored %s: %w", typ, err)
	}
	if rt, _ := fields["resourceType"].(string); rt != typ {
		return nil, fmt.Errorf("quality: a stored body is a %q, not a %s", rt, typ)
	}
	delete(fields, "resourceType")
	return &fhir.Resource{Type: typ, Fields: fields, Body: body}, nil
}
