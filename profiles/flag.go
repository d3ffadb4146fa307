package profiles

import (
	"bytes"
	"strconv"
	"time"

	"cpis/fhir"
)

// flag is the CP-IS Flag as it is served.
type flag struct {
	ResourceType string                 `json:"resourceType"`
	ID           string                 `json:"id"`
	Meta         fhir.Meta              `json:"meta"`
	Extension    []fhir.Extension       `json:"extension"`
	Status       string                 `json:"status"`
	Category     []fhir.CodeableConcept `json:"category"`
	Code         fhir.CodeableConcept   `json:"code"`
	Subject      fhir.Reference         `json:"subject"`
	Period       *fhir.Period           `json:"period,omitempty"`
	Author       fhir.Reference         `json:"author"`
}

// DerivedFlag is the Flag of one plan version. Until Ends it reads Body;
// from Ends on (when the plan's period is over) FlagAt shows it inactive.
// Ends is zero when the Flag never changes by itself.
type DerivedFlag struct {
	Body []byte
	Ends time.Time
}

// Flag derives the plan's Flag at the plan's version: same id, same version
// and time, status from the plan's status and period. laName is the local
// authority's name for Flag.author.display ("" if unknown).
func Flag(p *Plan, version int64, updated time.Time, laName string, now time.Time) DerivedFlag {
	f := flag{
		ResourceType: "Flag",
		ID:           p.ID,
		Meta: fhir.Meta{
			VersionID:   strconv.FormatInt(version, 10),
			LastUpdated: fhir.Instant(updated),
			Profile:     []string{FlagProfile},
		},
		Extension: []fhir.Extension{{URL: FlagDetailExtension, ValueReference: &fhir.Reference{Reference: "EpisodeOfCare/" + p.ID}}},
		Category: []fhir.CodeableConcept{{Coding: []fhir.Coding{{
			System: FlagCategorySystem, Code: FlagCategoryCode, Display: flagCategoryDisplay,
		}}}},
		Code:    planConcept(p.Type),
		Subject: fhir.Reference{Type: "Patient", Identifier: &fhir.Identifier{System: fhir.NHSNumberSystem, Value: p.NHSNumber}},
		Author:  fhir.Reference{Type: "Organization", Identifier: &fhir.Identifier{System: fhir.ODSSystem, Value: p.LA}, Display: laName},
	}
	if p.Period != (fhir.Period{}) {
		period := p.Period
		f.Period = &period
	}
	switch p.Status {
	case "entered-in-error":
		f.Status = "entered-in-error"
		return DerivedFlag{Body: encodeFlag(&f)}
	case "finished", "cancelled":
		f.Status = "inactive"
		return DerivedFlag{Body: encodeFlag(&f)}
	}
	if !p.Current(now) {
		f.Status = "inactive"
		return DerivedFlag{Body: encodeFlag(&f)}
	}
	f.Status = "active"
	return DerivedFlag{Body: encodeFlag(&f), Ends: p.End}
}

// Status texts of a Flag as encodeFlag writes them: the status is the only
// top-level string element of that name, and a string value can never hold
// these bytes (its quotes would be escaped).
const (
	activeStatus   = `"status":"active"`
	inactiveStatus = `"status":"inactive"`
)

// FlagAt is the Flag as it reads at now: once its plan's period is over
// (now is at or after ends) an active Flag reads inactive.
func FlagAt(body []byte, ends, now time.Time) []byte {
	if ends.IsZero() || now.Before(ends) {
		return body
	}
	return bytes.Replace(body, []byte(activeStatus), []byte(inactiveStatus), 1)
}

func planConcept(t PlanType) fhir.CodeableConcept {
	cc := fhir.CodeableConcept{Coding: []fhir.Coding{{System: PlanTypeSystem, Code: string(t), Display: t.Display()}}}
	if code, display := t.snomed(); code != "" {
		cc.Coding = append(cc.Coding, fhir.Coding{System: SNOMED, Code: code, Display: display})
	}
	cc.Text = t.Display()
	return cc
}

func encodeFlag(f *flag) []byte {
	b, err := fhir.Marshal(f)
	if err != nil {
		panic("profiles: encoding Flag: " + err.Error())
	}
	return b
}
