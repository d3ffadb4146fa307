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

// ParsePlanFacts reads the facts out of a stored EpisodeOfCare body (as the
// store serves it: validated when it was written), written at updated.
// Dates without a time are read in loc, as profiles.ParsePlan reads them.
func ParsePlanFacts(body []byte, updated time.Time, loc *time.Location) (PlanFacts, error) {
	res, err := stored(body, "EpisodeOfCare")
	if err != nil {
		return PlanFacts{}, err
	}
	return PlanFactsOf(profiles.ParsePlan(res, loc), updated), nil
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
