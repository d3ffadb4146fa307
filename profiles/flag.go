package profiles

import (
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

// DerivedFlag is the Flag of one plan version. Until Ends it reads Body; from
// Ends on (when the plan's period is over) it reads Ended, with status
// inactive. Ends is zero when the Flag never changes by itself.
type DerivedFlag struct {
	Body  []byte
	Ended []byte
	Ends  time.Time
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
	f.Status = "inactive"
	ended := encodeFlag(&f)
	if !p.Current(now) {
		return DerivedFlag{Body: ended}
	}
	f.Status = "active"
	d := DerivedFlag{Body: encodeFlag(&f)}
	if !p.End.IsZero() {
		d.Ended, d.Ends = ended, p.End
	}
	return d
}

// Pick chooses the body a derived resource shows at now.
func Pick(body, ended []byte, ends, now time.Time) []byte {
	if len(ended) > 0 && !ends.IsZero() && !now.Before(ends) {
		return ended
	}
	return body
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
