// Package profiles holds the CP-IS rules: the profiles of the resources the
// server stores and serves, plan types, the Flag derived from each plan, the
// local authority Organization and its contact numbers, and retention dates.
package profiles

import (
	"encoding/json"
	"fmt"
	"strings"
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
	maxIdentifiersPerPlan  = 10
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

// episodeOfCare is the part of an EpisodeOfCare the rules read.
type episodeOfCare struct {
	Meta                 *fhir.Meta             `json:"meta"`
	Text                 *narrative             `json:"text"`
	Contained            []json.RawMessage      `json:"contained"`
	Identifier           []fhir.Identifier      `json:"identifier"`
	Status               string                 `json:"status"`
	Type                 []fhir.CodeableConcept `json:"type"`
	Patient              *fhir.Reference        `json:"patient"`
	ManagingOrganization *fhir.Reference        `json:"managingOrganization"`
	Period               *fhir.Period           `json:"period"`
}

type narrative struct {
	Div string `json:"div"`
}

// ParsePlan applies the CP-IS EpisodeOfCare profile to a decoded resource and
// returns the plan, with every rule it breaks as an issue. Dates without a
// time are read in loc (Europe/London): a plan that ends on a date is current
// until midnight at the end of that day.
func ParsePlan(res *fhir.Resource, loc *time.Location) (*Plan, []fhir.Issue) {
	const t = "EpisodeOfCare"
	var e episodeOfCare
	if err := json.Unmarshal(res.Body, &e); err != nil {
		// Wrongly typed elements: the base validation has reported them.
		return nil, nil
	}
	var v issues
	v.profile(t, EpisodeOfCareProfile, e.Meta)
	v.narrative(t, e.Text)
	if len(e.Contained) > 0 {
		v.add(t+".contained", "Contained resources are not accepted")
	}
	p := &Plan{ID: res.ID(), Status: e.Status}

	switch len(e.Type) {
	case 0:
		v.add(t+".type", "The plan type is required: a coding from %s (CPP, LAC or UCPP)", PlanTypeSystem)
	case 1:
		p.Type = v.planType(t+".type[0]", e.Type[0])
	default:
		v.add(t+".type", "Exactly one plan type is allowed; found %d", len(e.Type))
	}

	p.NHSNumber = v.nhsNumber(t+".patient", e.Patient)
	p.LA, p.LAName = v.odsReference(t+".managingOrganization", e.ManagingOrganization)

	if e.Period == nil || e.Period.Start == "" {
		v.add(t+".period.start", "The plan start date is required")
	} else {
		p.Period = *e.Period
		start, _, ok := fhir.ParseDateTime(e.Period.Start, loc)
		if !ok {
			v.add(t+".period.start", "The plan start date is not a valid date")
		}
		p.Start = start
		if e.Period.End != "" {
			_, end, ok := fhir.ParseDateTime(e.Period.End, loc)
			switch {
			case !ok:
				v.add(t+".period.end", "The plan end date is not a valid date")
			case !start.IsZero() && end.Before(start):
				v.add(t+".period.end", "The plan ends before it starts")
			}
			p.End = end
		}
	}

	if len(e.Identifier) > maxIdentifiersPerPlan {
		v.add(t+".identifier", "At most %d identifiers are allowed", maxIdentifiersPerPlan)
	}
	for i, id := range e.Identifier {
		path := fmt.Sprintf("%s.identifier[%d]", t, i)
		if id.System == "" {
			v.add(path+".system", "A plan identifier needs a system")
		}
		if id.Value == "" {
			v.add(path+".value", "A plan identifier needs a value")
		}
	}
	p.Identifiers = e.Identifier
	return p, v.list
}

// issues collects rule violations.
type issues struct{ list []fhir.Issue }

func (v *issues) add(expr, format string, args ...any) {
	v.list = append(v.list, fhir.Issue{Code: fhir.CodeValidationError, Diagnostics: fmt.Sprintf(format, args...), Expression: []string{expr}})
}

// profile checks that any profile the resource claims is one the server
// knows for its type: an unknown claimed profile is an error, never a pass.
func (v *issues) profile(t, want string, m *fhir.Meta) {
	if m == nil {
		return
	}
	for i, p := range m.Profile {
		if p != want {
			v.add(fmt.Sprintf("%s.meta.profile[%d]", t, i), "Unknown profile %q: this server validates %s against %s", p, t, want)
		}
	}
}

// narrative refuses active content in text.div.
func (v *issues) narrative(t string, n *narrative) {
	if n == nil {
		return
	}
	if len(n.Div) > maxNarrativeCharacters {
		v.add(t+".text.div", "The narrative is too long")
	}
	low := strings.ToLower(n.Div)
	for _, bad := range []string{"<script", "javascript:", "<iframe", "<object", "<embed", "<form", "<style", "<link", "<meta"} {
		if strings.Contains(low, bad) {
			v.add(t+".text.div", "The narrative holds active content, which is not accepted")
			return
		}
	}
	for i := strings.Index(low, " on"); i >= 0; {
		rest := low[i+3:]
		j := 0
		for j < len(rest) && rest[j] >= 'a' && rest[j] <= 'z' {
			j++
		}
		if j > 0 && strings.HasPrefix(strings.TrimLeft(rest[j:], " "), "=") {
			v.add(t+".text.div", "The narrative holds event-handler attributes, which are not accepted")
			return
		}
		next := strings.Index(rest, " on")
		if next < 0 {
			break
		}
		i += 3 + next
	}
}

func (v *issues) planType(path string, cc fhir.CodeableConcept) PlanType {
	var found PlanType
	for i, c := range cc.Coding {
		pt, ok := planTypeOf(c)
		cpath := fmt.Sprintf("%s.coding[%d]", path, i)
		switch {
		case !ok && c.System == PlanTypeSystem:
			v.add(cpath+".code", "Unknown plan type %q: the codes are CPP, LAC and UCPP", c.Code)
			return ""
		case !ok:
			continue
		case found != "" && pt != found:
			v.add(cpath, "The codings name two different plan types (%s and %s)", found, pt)
			return ""
		}
		found = pt
	}
	if found == "" {
		v.add(path, "No plan type found: a coding from %s (CPP, LAC or UCPP) or SNOMED CT %s or %s is required", PlanTypeSystem, snomedCPP, snomedLAC)
	}
	return found
}

func (v *issues) nhsNumber(path string, r *fhir.Reference) string {
	if r == nil || r.Identifier == nil {
		v.add(path+".identifier", "The patient must be identified by NHS number (system %s)", fhir.NHSNumberSystem)
		return ""
	}
	id := r.Identifier
	if id.System != fhir.NHSNumberSystem {
		v.add(path+".identifier.system", "The patient identifier system must be %s", fhir.NHSNumberSystem)
	}
	if !fhir.ValidNHSNumber(id.Value) {
		v.add(path+".identifier.value", "Invalid NHS number: it must be 10 digits with a valid Modulus 11 check digit")
		return ""
	}
	return id.Value
}

func (v *issues) odsReference(path string, r *fhir.Reference) (code, display string) {
	if r == nil || r.Identifier == nil {
		v.add(path+".identifier", "The managing local authority must be identified by ODS code (system %s)", fhir.ODSSystem)
		return "", ""
	}
	if r.Identifier.System != fhir.ODSSystem {
		v.add(path+".identifier.system", "The organisation identifier system must be %s", fhir.ODSSystem)
	}
	if !fhir.ValidODSCode(r.Identifier.Value) {
		v.add(path+".identifier.value", "Invalid ODS code: 3 to 10 upper-case letters and digits")
		return "", ""
	}
	return r.Identifier.Value, r.Display
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
