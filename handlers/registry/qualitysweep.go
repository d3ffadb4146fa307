package registry

import (
	"context"

	"cpis/auth"
	"cpis/store"
)

// SweepSubject is the subject of the principal the data-quality sweep acts
// as, in logs.
const SweepSubject = "cpis-data-quality-sweep"

// SweepCaller is the caller the scheduled data-quality sweep computes one
// local authority's report as: that authority's system, allowed only
// system/DataQuality.read, so the sweep sees exactly what the LA's own
// $data-quality request would, and nothing of another authority's.
func SweepCaller(ods string) Caller {
	p := auth.NewPrincipal(auth.Principal{Kind: auth.System, Subject: SweepSubject, OrgCode: ods},
		[]auth.Permission{{Type: "DataQuality", Access: auth.Read}})
	return Caller{P: p, RequestID: "data-quality-sweep", Route: "sweep"}
}

// LocalAuthorities lists the ODS codes of the local authorities that have
// an Organization, in id order of their Organizations, each once: the
// authorities the sweep reports on. It is for the scheduled sweep only,
// never a request's answer.
func (r *Registry) LocalAuthorities(ctx context.Context) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	after := ""
	for {
		recs, _, err := r.st.Search(ctx, store.Query{Type: "Organization", After: after, Limit: qualityPage})
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			if rec.Owner != "" && !seen[rec.Owner] {
				seen[rec.Owner] = true
				out = append(out, rec.Owner)
			}
		}
		if len(recs) < qualityPage {
			return out, nil
		}
		after = recs[len(recs)-1].ID
	}
}
