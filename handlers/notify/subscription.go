// Package notify is the push delivery of local authorities' access
// notifications: FHIR Subscriptions (the HL7 Subscriptions R5 Backport for
// R4, rest-hook) on the one topic CP-IS offers, their management for
// authority systems, and a durable outbox per subscription driven by the
// authority's feed, delivered in the background. It is gin-free.
package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"cpis/fhir"
	"cpis/profiles"
)

// The one topic, and the backport IG's canonical URLs.
const (
	// TopicURL is the topic every subscription names in criteria: an
	// unscheduled access to a child whose plan the authority manages. Its
	// events are exactly the authority's feed (AuditEvent?date=).
	TopicURL = profiles.Base + "/SubscriptionTopic/unscheduled-access"

	backport = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
	// SubscriptionProfile is the backport's R4 Subscription profile.
	SubscriptionProfile = backport + "backport-subscription"
	// StatusProfile is the profile of a notification's status Parameters.
	StatusProfile = backport + "backport-subscription-status-r4"
	// NotificationProfile is the profile of a notification Bundle.
	NotificationProfile = backport + "backport-subscription-notification-r4"
	// TopicExtension advertises a topic in the CapabilityStatement.
	TopicExtension = backport + "capabilitystatement-subscriptiontopic-canonical"

	extPayloadContent = backport + "backport-payload-content"
	extHeartbeat      = backport + "backport-heartbeat-period"
	extTimeout        = backport + "backport-timeout"
	extMaxCount       = backport + "backport-max-count"
	extFilter         = backport + "backport-filter-criteria"
)

// Payload contents.
const (
	Empty        = "empty"
	IDOnly       = "id-only"
	FullResource = "full-resource"
)

// Limits of what a subscription may ask.
const (
	maxHeaders      = 10
	maxHeaderBytes  = 4096
	maxEventsPerMsg = 100
	minHeartbeat    = 10 // seconds
)

// channel is what delivery reads from a stored Subscription.
type channel struct {
	Endpoint  string
	Headers   [][2]string // name, value
	Content   string
	Heartbeat time.Duration // 0: none
	Timeout   time.Duration // 0: the server's
	MaxCount  int           // events per notification
	// Types are the plan types the subscription's filter asks for (nil:
	// no filter, every event of the topic).
	Types []string
}

// FilterResource and FilterParameter are what the topic can be filtered
// by (its canFilterBy): the plan type of the authority's plans about the
// child accessed, as EpisodeOfCare?type=CPP,LAC (codes of
// profiles.PlanTypeSystem, with or without the system).
const (
	FilterResource  = "EpisodeOfCare"
	FilterParameter = "type"
)

// readFilter reads the backport-filter-criteria of a Subscription's
// criteria: at most one, EpisodeOfCare?type= with plan type codes. It
// returns the plan types asked for (nil for no filter). Errors are 422s.
func readFilter(f map[string]any) ([]string, error) {
	ce, _ := f["_criteria"].(map[string]any)
	var issues []fhir.Issue
	bad := func(format string, args ...any) {
		issues = append(issues, fhir.Issue{Kind: fhir.KindUnprocessable, Expression: []string{"Subscription.criteria.extension"},
			Diagnostics: fmt.Sprintf(format, args...)})
	}
	var types []string
	seen := false
	for _, e := range list(ce["extension"]) {
		m, _ := e.(map[string]any)
		if m == nil || m["url"] != extFilter {
			continue
		}
		if seen {
			bad("At most one backport-filter-criteria")
			continue
		}
		seen = true
		v, _ := m["valueString"].(string)
		typ, query, ok := strings.Cut(v, "?")
		params, err := url.ParseQuery(query)
		if !ok || typ != FilterResource || err != nil || len(params) != 1 || len(params[FilterParameter]) != 1 {
			bad("backport-filter-criteria must be %s?%s= with plan type codes (%s, %s, %s), comma-separated: the topic can be filtered by plan type only",
				FilterResource, FilterParameter, profiles.CPP, profiles.LAC, profiles.UCPP)
			continue
		}
		for _, code := range strings.Split(params[FilterParameter][0], ",") {
			if sys, c, hasSys := strings.Cut(code, "|"); hasSys {
				if sys != profiles.PlanTypeSystem && sys != "" {
					bad("A plan type's system must be %s", profiles.PlanTypeSystem)
					continue
				}
				code = c
			}
			switch t := profiles.PlanType(code); t {
			case profiles.CPP, profiles.LAC, profiles.UCPP:
				if !slices.Contains(types, code) {
					types = append(types, code)
				}
			default:
				if len(code) > 16 {
					code = code[:16] + "…"
				}
				bad("%q is not a plan type: use %s, %s or %s", code, profiles.CPP, profiles.LAC, profiles.UCPP)
			}
		}
	}
	if err := fhir.Invalid(issues); err != nil {
		return nil, err
	}
	return types, nil
}

// checkSub reads an incoming Subscription (already valid R4): the topic,
// the rest-hook channel and its extensions. It returns every problem at
// once as a 422 (400 for a body that is not a Subscription), and the status
// to store: requested (a handshake follows) or off.
func checkSub(res *fhir.Resource, allowHTTP func(host string) bool, internal []string) (string, error) {
	var issues []fhir.Issue
	bad := func(expr, format string, args ...any) {
		issues = append(issues, fhir.Issue{Kind: fhir.KindUnprocessable, Expression: []string{"Subscription." + expr},
			Diagnostics: fmt.Sprintf(format, args...)})
	}
	status, _ := res.Fields["status"].(string)
	switch status {
	case "requested", "active":
		status = "requested"
	case "off":
	default:
		bad("status", "status must be requested (or off); the server sets active and error")
	}
	if c, _ := res.Fields["criteria"].(string); c != TopicURL {
		bad("criteria", "criteria must be the topic %s, the only one this server offers", TopicURL)
	}
	if _, err := readFilter(res.Fields); err != nil {
		issues = append(issues, fhir.As(err).Issues...)
	}
	ch, _ := res.Fields["channel"].(map[string]any)
	if ch == nil {
		bad("channel", "channel is required")
		return "", fhir.Invalid(issues)
	}
	if t, _ := ch["type"].(string); t != "rest-hook" {
		bad("channel.type", "Only the rest-hook channel is supported")
	}
	if _, err := readChannel(ch, allowHTTP, internal); err != nil {
		issues = append(issues, fhir.As(err).Issues...)
	}
	return status, fhir.Invalid(issues)
}

// readChannel reads the channel of a Subscription. Errors are 422s.
func readChannel(ch map[string]any, allowHTTP func(host string) bool, internal []string) (channel, error) {
	var issues []fhir.Issue
	bad := func(expr, format string, args ...any) {
		issues = append(issues, fhir.Issue{Kind: fhir.KindUnprocessable, Expression: []string{"Subscription.channel" + expr},
			Diagnostics: fmt.Sprintf(format, args...)})
	}
	out := channel{Content: IDOnly, MaxCount: maxEventsPerMsg}
	out.Endpoint, _ = ch["endpoint"].(string)
	if u, err := url.Parse(out.Endpoint); err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		bad(".endpoint", "endpoint must be an absolute https:// URL without credentials or fragment")
	} else if u.Scheme != "https" && !(u.Scheme == "http" && allowHTTP(u.Hostname())) {
		bad(".endpoint", "endpoint must be https:// (plain http:// only to a loopback address, for development)")
	} else if literalInternal(internal, u.Hostname()) {
		bad(".endpoint", "endpoint must be a public address: %s is private, link-local or unspecified (the operator may allow its host in CPIS_NOTIFY_INTERNAL_HOSTS)", u.Hostname())
	}
	if p, ok := ch["payload"].(string); ok && p != fhir.MIME && p != "application/json" {
		bad(".payload", "payload must be application/fhir+json")
	}
	if pe, ok := ch["_payload"].(map[string]any); ok {
		for _, e := range list(pe["extension"]) {
			m, _ := e.(map[string]any)
			if m == nil || m["url"] != extPayloadContent {
				continue
			}
			switch v, _ := m["valueCode"].(string); v {
			case Empty, IDOnly, FullResource:
				out.Content = v
			default:
				bad(".payload.extension", "backport-payload-content must be empty, id-only or full-resource")
			}
		}
	}
	for i, h := range list(ch["header"]) {
		s, _ := h.(string)
		name, value, ok := strings.Cut(s, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch {
		case !ok || !validHeaderName(name) || strings.ContainsAny(value, "\r\n\x00") || len(s) > maxHeaderBytes:
			bad(".header["+strconv.Itoa(i)+"]", "Each header must be \"Name: value\" on one line")
		case i >= maxHeaders:
			bad(".header", "At most %d headers", maxHeaders)
		case reservedHeader(name):
			bad(".header["+strconv.Itoa(i)+"]", "The header %s is set by the server", textproto.CanonicalMIMEHeaderKey(name))
		default:
			out.Headers = append(out.Headers, [2]string{name, value})
		}
	}
	for _, e := range list(ch["extension"]) {
		m, _ := e.(map[string]any)
		if m == nil {
			continue
		}
		n, isNum := number(m)
		switch m["url"] {
		case extHeartbeat:
			if !isNum || n < minHeartbeat || n > 86400 {
				bad(".extension", "backport-heartbeat-period must be a whole number of seconds from %d to 86400", minHeartbeat)
			}
			out.Heartbeat = time.Duration(n) * time.Second
		case extTimeout:
			if !isNum || n < 1 || n > 60 {
				bad(".extension", "backport-timeout must be a whole number of seconds from 1 to 60")
			}
			out.Timeout = time.Duration(n) * time.Second
		case extMaxCount:
			if !isNum || n < 1 || n > maxEventsPerMsg {
				bad(".extension", "backport-max-count must be a whole number from 1 to %d", maxEventsPerMsg)
			}
			out.MaxCount = int(n)
		}
	}
	return out, fhir.Invalid(issues)
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// number reads the integer value of a valueUnsignedInt, valuePositiveInt
// or valueInteger extension.
func number(m map[string]any) (int64, bool) {
	for _, k := range []string{"valueUnsignedInt", "valuePositiveInt", "valueInteger"} {
		if v, ok := m[k].(json.Number); ok {
			n, err := v.Int64()
			return n, err == nil
		}
	}
	return 0, false
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// reservedHeader: what the server sets on every notification.
func reservedHeader(name string) bool {
	switch textproto.CanonicalMIMEHeaderKey(name) {
	case "Content-Type", "Content-Length", "Host", "Transfer-Encoding", "Connection", "Content-Encoding":
		return true
	}
	return false
}

// Loopback reports whether host is a loopback address (or localhost): the
// only place plain http:// endpoints may point.
func Loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// decodeTree reads a stored body into a tree (numbers kept exact).
func decodeTree(body []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	delete(m, "resourceType")
	return m, nil
}

// channelOf reads the channel of a stored Subscription body.
func channelOf(body []byte) (channel, error) {
	m, err := decodeTree(body)
	if err != nil {
		return channel{}, err
	}
	ch, _ := m["channel"].(map[string]any)
	out, err := readChannel(ch, func(string) bool { return true }, []string{"*"})
	if err != nil {
		return out, err
	}
	out.Types, err = readFilter(m)
	return out, err
}

// served is a stored Subscription as its authority reads it: with the
// current status (delivery changes it) and without channel.header, whose
// values are the authority's secrets for its own endpoint.
func served(body []byte, status, errText string) ([]byte, error) {
	m, err := decodeTree(body)
	if err != nil {
		return nil, err
	}
	if ch, ok := m["channel"].(map[string]any); ok {
		delete(ch, "header")
		delete(ch, "_header")
	}
	m["status"] = status
	delete(m, "error")
	if status == "error" && errText != "" {
		m["error"] = errText
	}
	return (&fhir.Resource{Type: "Subscription", Fields: m}).Encode(), nil
}
