// Package profiles holds the CP-IS rules: the profiles of the resources the
// server stores and serves, plan types, the Flag derived from each plan, the
// local authority Organization and its contact numbers, and retention dates.
package profiles

import (
	"time"

	"cpis/fhir"
)

// Canonical URLs of the project's own artifacts.
const (
	Base                   = "https://fhir.cpis.dev"
	PlanTypeSystem         = Base + "/CodeSystem/plan-type"
	ContactPurposeSystem   = Base + "/CodeSystem/la-contact-purpose"
	SNOMED                 = "http://snomed.info/sct"
	FlagCategorySystem     = "https://fhir.nhs.uk/England/CodeSystem/PatientFlagCategory"
	FlagCategoryCode       = "CP-IS"
	FlagDetailExtension    = "http://hl7.org/fhir/StructureDefinition/flag-detail"
	EpisodeOfCareProfile   = Base + "/StructureDefinition/CPIS-EpisodeOfCare"
	FlagProfile            = Base + "/StructureDefinition/CPIS-Flag"
	OrganizationProfile    = Base + "/StructureDefinition/CPIS-Organization"
	AuditEventProfile      = Base + "/StructureDefinition/CPIS-AuditEvent"
	ContactOfficeHours     = "office-hours"
	ContactEmergencyDuty   = "emergency-duty-team"
	snomedCPP              = "1064311000000109"
	snomedLAC              = "764841000000100"
	flagCategoryDisplay    = "Child Protection - Information Sharing Flag"
	maxNarrativeCharacters = 10000
)

// PlanType is one of the three CP-IS plan types.
type PlanType string

// The plan types.
const (
	CPP  PlanType = "CPP"
	LAC  PlanType = "LAC"
	UCPP PlanType = "UCPP"
)

// Display is the plan type's display text.
func (p PlanType) Display() string {
	switch p {
	case CPP:
		return "Child Protection Plan"
	case LAC:
		return "Looked After Child"
	case UCPP:
		return "Unborn Child Protection Plan"
	}
	return string(p)
}

// snomed is the SNOMED CT synonym of a plan type, if it has one.
func (p PlanType) snomed() (code, display string) {
	switch p {
	case CPP:
		return snomedCPP, "Child protection plan"
	case LAC:
		return snomedLAC, "Looked after child"
	}
	return "", ""
}

// planTypeOf maps one coding to a plan type.
func planTypeOf(c fhir.Coding) (PlanType, bool) {
	switch c.System {
	case PlanTypeSystem:
		switch PlanType(c.Code) {
		case CPP, LAC, UCPP:
			return PlanType(c.Code), true
		}
	case SNOMED:
		switch c.Code {
		case snomedCPP:
			return CPP, true
		case snomedLAC:
			return LAC, true
		}
	}
	return "", false
}

// Plan is what the server keeps of a CP-IS EpisodeOfCare: the facts it
// indexes and derives the Flag from.
type Plan struct {
	ID          string
	Status      string
	Type        PlanType
	NHSNumber   string // the child's, or for UCPP the mother's
	LA          string // managing organisation's ODS code
	LAName      string // managingOrganization.display, if sent
	Period      fhir.Period
	Start       time.Time
	End         time.Time // zero: open-ended; else the first instant after the plan
	Identifiers []fhir.Identifier
}

// ParsePlan reads the plan out of an EpisodeOfCare that Catalog.Validate
// found valid. It reads the decoded tree the validator checked (never the
// body again), so the plan, its Flag and its search keys are what was
// validated. Dates without a time are read in loc (Europe/London): a plan
// that ends on a date is current until midnight at the end of that day.
func ParsePlan(res *fhir.Resource, loc *time.Location) *Plan {
	f := res.Fields
	p := &Plan{ID: res.ID(), Status: str(f, "status")}
	for _, id := range list(f, "identifier") {
		p.Identifiers = append(p.Identifiers, identifier(asObject(id)))
	}
	if types := list(f, "type"); len(types) > 0 {
		for _, c := range list(asObject(types[0]), "coding") {
			if pt, ok := planTypeOf(coding(asObject(c))); ok {
				p.Type = pt
				break
			}
		}
	}
	if id := obj(obj(f, "patient"), "identifier"); id != nil {
		p.NHSNumber = str(id, "value")
	}
	if r := obj(f, "managingOrganization"); r != nil && obj(r, "identifier") != nil {
		p.LA, p.LAName = str(obj(r, "identifier"), "value"), str(r, "display")
	}
	if per := obj(f, "period"); per != nil {
		p.Period = fhir.Period{Start: str(per, "start"), End: str(per, "end")}
		p.Start, _, _ = fhir.ParseDateTime(p.Period.Start, loc)
		if p.Period.End != "" {
			_, p.End, _ = fhir.ParseDateTime(p.Period.End, loc)
		}
	}
	return p
}

// Current reports whether the plan is current at now.
func (p *Plan) Current(now time.Time) bool { return p.End.IsZero() || now.Before(p.End) }

// Keys are the identifier search keys of the plan, system|value.
func (p *Plan) Keys() []string {
	out := make([]string, 0, len(p.Identifiers))
	for _, id := range p.Identifiers {
		out = append(out, id.Token())
	}
	return out
}

// RetainedSince is the oldest plan end date still kept: plans that ended
// before it are not served and are purged.
func RetainedSince(now time.Time, days int) time.Time {
	return now.AddDate(0, 0, -days)
}
