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

// event is one numbered event with its access, as the authority sees it
// (Rec is nil when the access is no longer stored; for id-only, Rec holds
// only the id kept with the event, when it was kept).
type event struct {
	store.SubEvent
	Rec *store.AuditRecord
}

func (s *Service) subURL(id string) string { return s.cfg.BaseURL + "/Subscription/" + id }

// statusParams is the subscription-status Parameters of a notification
// of type typ, written directly (a notification carries up to
// maxEventsPerMsg events, each three parameter parts: encoding them by
// reflection was most of a notification's CPU).
func (s *Service) statusParams(sub store.Subscription, typ string, evs []event, content ...string) []byte {
	b := make([]byte, 0, 640+len(evs)*300)
	b = append(b, `{"resourceType":"Parameters","id":`...)
	b = fhir.AppendString(b, s.cfg.NewID())
	b = append(b, `,"meta":{"profile":[`...)
	b = fhir.AppendString(b, StatusProfile)
	b = append(b, `]},"parameter":[`...)
	b = appendParam(b, "subscription", "valueReference", s.subURL(sub.ID))
	b = append(b, ',')
	b = appendParam(b, "topic", "valueCanonical", TopicURL)
	b = append(b, ',')
	b = appendParam(b, "status", "valueCode", sub.Status)
	b = append(b, ',')
	b = appendParam(b, "type", "valueCode", typ)
	b = append(b, ',')
	b = appendParam(b, "events-since-subscription-start", "valueString", strconv.FormatInt(sub.Events, 10))
	withFocus := len(content) == 0 || content[0] != Empty
	for _, e := range evs {
		b = append(b, `,{"name":"notification-event","part":[{"name":"event-number","valueString":"`...)
		b = strconv.AppendInt(b, e.Number, 10)
		b = append(b, `"},{"name":"timestamp","valueInstant":"`...)
		b = fhir.AppendInstant(b, e.Recorded)
		b = append(b, `"}`...)
		if withFocus && e.Rec != nil {
			b = append(b, ',')
			b = appendParam(b, "focus", "valueReference", "AuditEvent/"+e.Rec.ID)
		}
		b = append(b, "]}"...)
	}
	return append(b, "]}"...)
}

// appendParam appends one parameter of a single value: valueReference
// (v the reference) or a primitive value[x].
func appendParam(b []byte, name, kind, v string) []byte {
	b = append(b, `{"name":`...)
	b = fhir.AppendString(b, name)
	b = append(b, `,"`...)
	b = append(b, kind...)
	b = append(b, `":`...)
	if kind == "valueReference" {
		b = append(b, `{"reference":`...)
		b = fhir.AppendString(b, v)
		return append(b, "}}"...)
	}
	b = fhir.AppendString(b, v)
	return append(b, '}')
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
