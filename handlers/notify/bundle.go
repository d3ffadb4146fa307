package notify

import (
	"context"
	"strconv"

	"cpis/fhir"
	"cpis/store"
)

// The notification Bundle of the backport IG for R4: type history, its
// first entry the subscription-status Parameters, then (full-resource) the
// focus resources, each entry with request and response (bdl-3, bdl-4).

type ref struct {
	Reference string `json:"reference"`
}

type param struct {
	Name           string  `json:"name"`
	ValueReference *ref    `json:"valueReference,omitempty"`
	ValueCanonical string  `json:"valueCanonical,omitempty"`
	ValueCode      string  `json:"valueCode,omitempty"`
	ValueString    string  `json:"valueString,omitempty"`
	ValueInstant   string  `json:"valueInstant,omitempty"`
	Part           []param `json:"part,omitempty"`
}

type parameters struct {
	ResourceType string  `json:"resourceType"`
	ID           string  `json:"id"`
	Meta         metaP   `json:"meta"`
	Parameter    []param `json:"parameter"`
}

type metaP struct {
	Profile []string `json:"profile"`
}

// event is one numbered event with its access, as the authority sees it
// (Rec is nil when the access is no longer stored; for id-only, Rec holds
// only the id kept with the event, when it was kept).
type event struct {
	store.SubEvent
	Rec *store.AuditRecord
}

func (s *Service) subURL(id string) string { return s.cfg.BaseURL + "/Subscription/" + id }

// statusParams is the subscription-status Parameters of a notification
// of type typ.
func (s *Service) statusParams(sub store.Subscription, typ string, evs []event, content ...string) []byte {
	ps := []param{
		{Name: "subscription", ValueReference: &ref{Reference: s.subURL(sub.ID)}},
		{Name: "topic", ValueCanonical: TopicURL},
		{Name: "status", ValueCode: sub.Status},
		{Name: "type", ValueCode: typ},
		{Name: "events-since-subscription-start", ValueString: strconv.FormatInt(sub.Events, 10)},
	}
	withFocus := len(content) == 0 || content[0] != Empty
	for _, e := range evs {
		parts := []param{
			{Name: "event-number", ValueString: strconv.FormatInt(e.Number, 10)},
			{Name: "timestamp", ValueInstant: fhir.Instant(e.Recorded)},
		}
		if withFocus && e.Rec != nil {
			parts = append(parts, param{Name: "focus", ValueReference: &ref{Reference: "AuditEvent/" + e.Rec.ID}})
		}
		ps = append(ps, param{Name: "notification-event", Part: parts})
	}
	b, err := fhir.Marshal(parameters{ResourceType: "Parameters", ID: s.cfg.NewID(), Meta: metaP{Profile: []string{StatusProfile}}, Parameter: ps})
	if err != nil {
		panic("notify: encoding Parameters: " + err.Error())
	}
	return b
}

// notification builds a notification Bundle of the events given, with
// their accesses read as the authority sees them.
func (s *Service) notification(ctx context.Context, sub store.Subscription, typ, content string, numbered []store.SubEvent) ([]byte, error) {
	evs := make([]event, len(numbered))
	var seqs []int64 // the accesses to read
	for i, e := range numbered {
		evs[i].SubEvent = e
		switch {
		case content == Empty:
		case content == IDOnly && e.ID != "":
			// The id was kept when the event was numbered from the
			// authority's own feed: nothing to read.
			evs[i].Rec = &store.AuditRecord{Seq: e.Seq, ID: e.ID}
		default:
			seqs = append(seqs, e.Seq)
		}
	}
	if len(seqs) > 0 {
		recs, err := s.cfg.Feed.LABodies(ctx, sub.Owner, seqs)
		if err != nil {
			return nil, err
		}
		bySeq := make(map[int64]*store.AuditRecord, len(recs))
		for i := range recs {
			bySeq[recs[i].Seq] = &recs[i]
		}
		for i := range evs {
			if evs[i].Rec == nil {
				evs[i].Rec = bySeq[evs[i].Seq]
			}
		}
	}
	b := &fhir.Bundle{ID: s.cfg.NewID(), Meta: &fhir.Meta{Profile: []string{NotificationProfile}}, Type: "history",
		Timestamp: fhir.Instant(s.now())}
	b.Entry = append(b.Entry, fhir.Entry{
		FullURL:  "urn:uuid:" + s.cfg.NewID(),
		Resource: s.statusParams(sub, typ, evs, content),
		Request:  &fhir.EntryRequest{Method: "GET", URL: s.subURL(sub.ID) + "/$status"},
		Response: &fhir.EntryResponse{Status: "200"},
	})
	if content == FullResource {
		for _, e := range evs {
			if e.Rec == nil {
				continue
			}
			b.Entry = append(b.Entry, fhir.Entry{
				FullURL:  s.cfg.BaseURL + "/AuditEvent/" + e.Rec.ID,
				Resource: e.Rec.Body,
				Request:  &fhir.EntryRequest{Method: "POST", URL: "AuditEvent"},
				Response: &fhir.EntryResponse{Status: "201"},
			})
		}
	}
	return b.AppendJSON(nil), nil
}
