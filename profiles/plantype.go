package profiles

import "cpis/fhir"

// PlanTypeOf maps one coding of EpisodeOfCare.type to a plan type, as
// ParsePlan reads it: for readers of stored plans that decode only the
// elements they need (the data-quality report reads every plan of an LA).
func PlanTypeOf(c fhir.Coding) (PlanType, bool) { return planTypeOf(c) }
