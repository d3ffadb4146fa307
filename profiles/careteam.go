package profiles

import (
	"fmt"
	"strconv"
	"time"

	"cpis/fhir"
)

// The CareTeam profile, and the extension that says what each of its
// local authority numbers is for.
const (
	CareTeamProfile         = Base + "/StructureDefinition/CPIS-CareTeam"
	ContactPurposeExtension = Base + "/StructureDefinition/la-contact-purpose"
)

// careTeam is the CP-IS CareTeam as it is served: the national CP-IS FHIR
// consumer API's answer about one plan.
type careTeam struct {
	ResourceType         string                 `json:"resourceType"`
	ID                   string                 `json:"id"`
	Meta                 fhir.Meta              `json:"meta"`
	Status               string                 `json:"status"`
	Category             []fhir.CodeableConcept `json:"category"`
	Name                 string                 `json:"name,omitempty"`
	Subject              fhir.Reference         `json:"subject"`
	Period               *fhir.Period           `json:"period,omitempty"`
	ManagingOrganization []fhir.Reference       `json:"managingOrganization"`
	Telecom              []laPhone              `json:"telecom,omitempty"`
}

// laPhone is a ContactPoint of the local authority that says what it is
// for: its rank and its la-contact-purpose extension.
type laPhone struct {
	Extension []codingExtension `json:"extension"`
	System    string            `json:"system"`
	Value     string            `json:"value"`
	Use       string            `json:"use"`
	Rank      int               `json:"rank"`
}

type codingExtension struct {
	URL         string      `json:"url"`
	ValueCoding fhir.Coding `json:"valueCoding"`
}

// CareTeam derives the CareTeam of a plan: same id as the plan, the
// plan's type, period and subject, status as the plan's Flag, and the
// managing local authority with its current numbers from la (nil when the
// server holds no Organization for the authority: the CareTeam then has
// no telecom, and the plan's managingOrganization.display as name).
//
// version and updated are the plan's; a caller that renders with an
// Organization newer than the plan passes the later of the two times as
// updated. Until ends (zero: never) the body reads as it is; from ends on
// CareTeamAt shows it inactive.
func CareTeam(p *Plan, la *LA, version int64, updated, now time.Time) (body []byte, ends time.Time) {
	name := p.LAName
	if la != nil && la.Name != "" {
		name = la.Name
	}
	ct := careTeam{
		ResourceType: "CareTeam",
		ID:           p.ID,
		Meta: fhir.Meta{
			VersionID:   strconv.FormatInt(version, 10),
			LastUpdated: fhir.Instant(updated),
			Profile:     []string{CareTeamProfile},
		},
		Category:             []fhir.CodeableConcept{planConcept(p.Type)},
		Name:                 name,
		Subject:              fhir.Reference{Type: "Patient", Identifier: &fhir.Identifier{System: fhir.NHSNumberSystem, Value: p.NHSNumber}},
		ManagingOrganization: []fhir.Reference{{Type: "Organization", Identifier: &fhir.Identifier{System: fhir.ODSSystem, Value: p.LA}, Display: name}},
	}
	if p.Period != (fhir.Period{}) {
		period := p.Period
		ct.Period = &period
	}
	if la != nil {
		ct.Telecom = laPhones(la)
	}
	switch {
	case p.Status == "entered-in-error":
		ct.Status = "entered-in-error"
	case p.Status == "finished" || p.Status == "cancelled" || !p.Current(now):
		ct.Status = "inactive"
	default:
		ct.Status, ends = "active", p.End
	}
	b, err := fhir.Marshal(&ct)
	if err != nil {
		panic("profiles: encoding CareTeam: " + err.Error())
	}
	return b, ends
}

// CareTeamAt is the CareTeam as it reads at now: once its plan's period is
// over (now is at or after ends) an active CareTeam reads inactive, exactly
// as FlagAt does for the Flag (the status is the CareTeam's only "status"
// key, and no string value can hold that text unescaped).
func CareTeamAt(body []byte, ends, now time.Time) []byte { return FlagAt(body, ends, now) }

// laPhones are the local authority's numbers, office hours first.
func laPhones(la *LA) []laPhone {
	var out []laPhone
	for _, n := range []struct {
		code, display, value string
		rank                 int
	}{
		{ContactOfficeHours, "Office hours", la.OfficeHours, 1},
		{ContactEmergencyDuty, "Emergency duty team", la.EmergencyDuty, 2},
	} {
		if n.value == "" {
			continue
		}
		out = append(out, laPhone{
			Extension: []codingExtension{{URL: ContactPurposeExtension,
				ValueCoding: fhir.Coding{System: ContactPurposeSystem, Code: n.code, Display: n.display}}},
			System: "phone", Value: n.value, Use: "work", Rank: n.rank,
		})
	}
	return out
}

// StoredPlan reads the plan out of an EpisodeOfCare body the server stored
// (the body it validated and stamped when the plan was written), without
// validating it again: what the CareTeam of a stored plan is rendered from.
func StoredPlan(body []byte, loc *time.Location) (*Plan, error) {
	res, err := stored(body, "EpisodeOfCare")
	if err != nil {
		return nil, err
	}
	return ParsePlan(res, loc), nil
}

// StoredLA reads the local authority (ODS code, name, numbers) out of an
// Organization body the server stored.
func StoredLA(body []byte) (*LA, error) {
	res, err := stored(body, "Organization")
	if err != nil {
		return nil, err
	}
	return ParseLA(res), nil
}

func stored(body []byte, typ string) (*fhir.Resource, error) {
	var fields map[string]any
	if err := decodeJSON(body, &fields); err != nil {
		return nil, fmt.Errorf("profiles: decoding a stored %s: %w", typ, err)
	}
	if rt, _ := fields["resourceType"].(string); rt != typ {
		return nil, fmt.Errorf("profiles: a stored %s is a %q", typ, rt)
	}
	return &fhir.Resource{Type: typ, Fields: fields, Body: body}, nil
}
