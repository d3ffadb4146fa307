package registry

import (
	"context"
	"encoding/json"
	"time"

	"cpis/auth"
	"cpis/fhir"
	"cpis/profiles"
	"cpis/store"
)

// Incoming is a resource a client sent, decoded and validated by the
// handlers, with what the registry reads from it.
type Incoming struct {
	ID   string // the id the client sent ("" if none)
	Res  *fhir.Resource
	Plan *profiles.Plan // EpisodeOfCare
	LA   *profiles.LA   // Organization
}

// NewIncoming reads a valid EpisodeOfCare or Organization for writing.
func (r *Registry) NewIncoming(res *fhir.Resource) *Incoming {
	in := &Incoming{ID: res.ID(), Res: res}
	switch res.Type {
	case "EpisodeOfCare":
		in.Plan = profiles.ParsePlan(res, r.loc)
	case "Organization":
		in.LA = profiles.ParseLA(res)
	}
	return in
}

// Owner is the organisation that will manage the resource.
func (in *Incoming) Owner() string {
	if in.Plan != nil {
		return in.Plan.LA
	}
	return in.LA.ODS
}

// tokens are the resource's identifiers, system|value.
func (in *Incoming) tokens() []string {
	if in.Plan != nil {
		return in.Plan.Keys()
	}
	return []string{fhir.ODSSystem + "|" + in.LA.ODS}
}

// Keys are the resource's unique keys in the store: its identifiers within
// the organisation that manages it.
func (in *Incoming) Keys() []string {
	tokens := in.tokens()
	out := make([]string, len(tokens))
	for i, t := range tokens {
		out[i] = storeKey(in.Owner(), t)
	}
	return out
}

// HasKey reports whether the resource carries an identifier (system|value).
func (in *Incoming) HasKey(token string) bool {
	for _, t := range in.tokens() {
		if t == token {
			return true
		}
	}
	return false
}

// OwnWrite checks a local authority writes only what it manages: the
// resource must name the caller's own ODS code.
func OwnWrite(p *auth.Principal, in *Incoming) error {
	if in.Owner() != p.OrgCode {
		expr := "Organization.identifier"
		if in.Plan != nil {
			expr = "EpisodeOfCare.managingOrganization.identifier.value"
		}
		return fhir.At(fhir.KindForbidden, expr, "Access has been denied to process this request: a local authority may only write its own records (%s)", p.OrgCode)
	}
	return nil
}

// record builds the stored record of the resource at a version: the JSON
// with id and meta stamped, its keys, and for a plan its derived Flag.
func (r *Registry) record(typ, id string, in *Incoming, version int64, at time.Time, laName string) store.Record {
	in.Res.SetID(id)
	profile := profiles.OrganizationProfile
	if in.Plan != nil {
		profile = profiles.EpisodeOfCareProfile
	}
	in.Res.Stamp(version, at, profile)
	rec := store.Record{Type: typ, ID: id, Version: version, Updated: at, Owner: in.Owner(), Keys: in.Keys(), Body: in.Res.Encode()}
	if p := in.Plan; p != nil {
		p.ID = id
		rec.Subject, rec.End = p.NHSNumber, p.End
		rec.Start = store.StartOf(p.Period.Start) // its Flag's period.start too
		f := profiles.Flag(p, version, at, laName, at)
		rec.Derived = &store.Derived{Type: "Flag", Body: f.Body, Ends: f.Ends}
	}
	return rec
}

// laNames caches local authority names by ODS code for one request, so a
// Bundle of plans looks its LA up once.
type laNames map[string]string

// laName is the local authority's name for a plan's Flag: the display the
// plan gives, else the name of the LA's Organization if it has one.
func (r *Registry) laName(ctx context.Context, in *Incoming, names laNames) (string, error) {
	if in.Plan == nil {
		return "", nil
	}
	if in.Plan.LAName != "" {
		return in.Plan.LAName, nil
	}
	if n, ok := names[in.Plan.LA]; ok {
		return n, nil
	}
	orgs, _, err := r.st.Search(ctx, store.Query{Type: "Organization", Key: laKey(in.Plan.LA), Limit: 1})
	if err != nil {
		return "", err
	}
	name := ""
	if len(orgs) > 0 {
		// Read with exact keys (a map, not a struct: encoding/json matches
		// struct fields case-insensitively); the server wrote this body.
		var o map[string]json.RawMessage
		if json.Unmarshal(orgs[0].Body, &o) == nil {
			_ = json.Unmarshal(o["name"], &name)
		}
	}
	names[in.Plan.LA] = name
	return name, nil
}
