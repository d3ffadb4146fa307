package notify

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
	"cpis/store"
)

// The reflection encoding statusParams had, kept as the oracle of the
// direct one: the same bytes for every kind of notification.
type oracleRef struct {
	Reference string `json:"reference"`
}

type oracleParam struct {
	Name           string        `json:"name"`
	ValueReference *oracleRef    `json:"valueReference,omitempty"`
	ValueCanonical string        `json:"valueCanonical,omitempty"`
	ValueCode      string        `json:"valueCode,omitempty"`
	ValueString    string        `json:"valueString,omitempty"`
	ValueInstant   string        `json:"valueInstant,omitempty"`
	Part           []oracleParam `json:"part,omitempty"`
}

type oracleMeta struct {
	Profile []string `json:"profile"`
}

type oracleParameters struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id"`
	Meta         oracleMeta    `json:"meta"`
	Parameter    []oracleParam `json:"parameter"`
}

func oracleStatus(id, base string, sub store.Subscription, typ string, evs []event, content ...string) []byte {
	ps := []oracleParam{
		{Name: "subscription", ValueReference: &oracleRef{Reference: base + "/Subscription/" + sub.ID}},
		{Name: "topic", ValueCanonical: TopicURL},
		{Name: "status", ValueCode: sub.Status},
		{Name: "type", ValueCode: typ},
		{Name: "events-since-subscription-start", ValueString: strconv.FormatInt(sub.Events, 10)},
	}
	withFocus := len(content) == 0 || content[0] != Empty
	for _, e := range evs {
		parts := []oracleParam{
			{Name: "event-number", ValueString: strconv.FormatInt(e.Number, 10)},
			{Name: "timestamp", ValueInstant: fhir.Instant(e.Recorded)},
		}
		if withFocus && e.Rec != nil {
			parts = append(parts, oracleParam{Name: "focus", ValueReference: &oracleRef{Reference: "AuditEvent/" + e.Rec.ID}})
		}
		ps = append(ps, oracleParam{Name: "notification-event", Part: parts})
	}
	b, err := fhir.Marshal(oracleParameters{ResourceType: "Parameters", ID: id, Meta: oracleMeta{Profile: []string{StatusProfile}}, Parameter: ps})
	if err != nil {
		panic(err)
	}
	return b
}

func TestStatusParamsAsReflectionEncodedThem(t *testing.T) {
	const base = "https://cpis.example/FHIR/R4?a=1&b=<2>"
	s := &Service{cfg: Config{BaseURL: base, NewID: func() string { return "p-1" }}}
	at := time.Date(2026, 3, 4, 5, 6, 7, 891_000_000, time.UTC)
	evs := []event{
		{SubEvent: store.SubEvent{Number: 7, Seq: 70, Recorded: at}, Rec: &store.AuditRecord{ID: "a-7"}},
		{SubEvent: store.SubEvent{Number: 8, Seq: 80, Recorded: at.Add(time.Second)}}, // no longer stored
		{SubEvent: store.SubEvent{Number: 9, Seq: 90, Recorded: at.Add(time.Minute)}, Rec: &store.AuditRecord{ID: "a\"9\\\u2028"}},
	}
	for _, c := range []struct {
		name    string
		sub     store.Subscription
		typ     string
		evs     []event
		content []string
	}{
		{"handshake", store.Subscription{ID: "s1", Status: "requested"}, "handshake", nil, []string{Empty}},
		{"query-status", store.Subscription{ID: "s1", Status: "active", Events: 12}, "query-status", nil, nil},
		{"id-only", store.Subscription{ID: "s1", Status: "active", Events: 9}, "event-notification", evs, []string{IDOnly}},
		{"empty", store.Subscription{ID: "s1", Status: "error", Events: 9}, "event-notification", evs, []string{Empty}},
		{"full", store.Subscription{ID: "s-\t2", Status: "active", Events: 9}, "query-event", evs, []string{FullResource}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := s.statusParams(c.sub, c.typ, c.evs, c.content...)
			want := oracleStatus("p-1", base, c.sub, c.typ, c.evs, c.content...)
			require.Equal(t, string(want), string(got))
			assert.Empty(t, fhir.CheckJSON(got, ""), "one reading")
		})
	}
}

func BenchmarkStatusParams(b *testing.B) {
	s := &Service{cfg: Config{BaseURL: "https://cpis.example/FHIR/R4", NewID: func() string { return "5d0c4a1e-7d0c-4a1e-9d0c-4a1e7d0c4a1e" }}}
	evs := make([]event, maxEventsPerMsg)
	at := time.Now()
	for i := range evs {
		evs[i] = event{SubEvent: store.SubEvent{Number: int64(i + 1), Seq: int64(i), Recorded: at}, Rec: &store.AuditRecord{ID: "5d0c4a1e-7d0c-4a1e-9d0c-4a1e7d0c4a1e"}}
	}
	sub := store.Subscription{ID: "s1", Status: "active", Events: 100}
	b.ReportAllocs()
	for b.Loop() {
		s.statusParams(sub, "event-notification", evs, IDOnly)
	}
}
