package profiles

import (
	"fmt"

	"cpis/fhir"
)

// rules are the CP-IS constraints FHIRPath cannot say in full (a Modulus
// 11 check digit, dates read in Europe/London, what counts as active
// content), written in Go. A profile names each by its constraint key on
// the element it applies to, with the human text and a partial
// expression; the validator runs the rule on each value of that element.
// Load refuses a profile that names a key missing here.
var rules = map[string]func(v *validation, it item){
	"cpis-nhs-1": func(v *validation, it item) {
		if s, _ := it.value.(string); !fhir.ValidNHSNumber(s) {
			v.add(it.expr, "Invalid NHS number: it must be 10 digits with a valid Modulus 11 check digit")
		}
	},
	"cpis-ods-1": func(v *validation, it item) {
		if s, _ := it.value.(string); !fhir.ValidODSCode(s) {
			v.add(it.expr, "Invalid ODS code: 3 to 10 upper-case letters and digits")
		}
	},
	"cpis-per-1": func(v *validation, it item) {
		m, _ := it.value.(map[string]any)
		start, _ := m["start"].(string)
		end, _ := m["end"].(string)
		if start == "" || end == "" {
			return
		}
		s, _, ok1 := fhir.ParseDateTime(start, v.c.loc)
		_, e, ok2 := fhir.ParseDateTime(end, v.c.loc)
		if ok1 && ok2 && e.Before(s) {
			v.add(it.expr+".end", "The plan ends before it starts")
		}
	},
	"cpis-eoc-1": func(v *validation, it item) {
		m, _ := it.value.(map[string]any)
		list, _ := m["coding"].([]any)
		var found PlanType
		for i, c := range list {
			cm, _ := c.(map[string]any)
			pt, ok := planTypeOf(coding(cm))
			switch {
			case !ok:
			case found != "" && pt != found:
				v.add(fmt.Sprintf("%s.coding[%d]", it.expr, i), "The codings name two different plan types (%s and %s)", found, pt)
				return
			default:
				found = pt
			}
		}
	},
	"cpis-txt-1": func(v *validation, it item) {
		m, _ := it.value.(map[string]any)
		div, _ := m["div"].(string)
		if msg := activeContent(div); msg != "" {
			v.add(it.expr+".div", "%s", msg)
		}
	},
	"cpis-org-1": func(v *validation, it item) {
		m, _ := it.value.(map[string]any)
		list, _ := m["telecom"].([]any)
		for _, t := range list {
			tm, _ := t.(map[string]any)
			if tm["system"] == "phone" && tm["value"] != nil && tm["value"] != "" {
				return
			}
		}
		v.add(it.expr+".telecom", "Each contact needs a phone number (telecom with system phone)")
	},
	"cpis-ct-1": func(v *validation, it item) {
		m, _ := it.value.(map[string]any)
		want := map[string]string{"1": ContactOfficeHours, "2": ContactEmergencyDuty}[fmt.Sprint(m["rank"])]
		if want == "" {
			return
		}
		list, _ := m["extension"].([]any)
		for _, x := range list {
			xm, _ := x.(map[string]any)
			if xm["url"] != ContactPurposeExtension {
				continue
			}
			if cd, _ := xm["valueCoding"].(map[string]any); cd["system"] == ContactPurposeSystem && cd["code"] == want {
				return
			}
		}
		v.add(it.expr, "Rank %v is the %s number: its la-contact-purpose extension must say %s", m["rank"], want, want)
	},
}

func coding(m map[string]any) fhir.Coding {
	s, _ := m["system"].(string)
	c, _ := m["code"].(string)
	return fhir.Coding{System: s, Code: c}
}
