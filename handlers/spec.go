package handlers

import (
	"cpis/fhir"
	"cpis/handlers/notify"
	"cpis/profiles"
)

// paramKind is how a search parameter is applied.
type paramKind int

const (
	paramNHSNumber  paramKind = iota + 1 // a patient's NHS number (token)
	paramIdentifier                      // the resource's identifier (token, system|value)
	paramID                              // _id
	paramDate                            // AuditEvent.recorded (date, ge/gt)
	paramSilent                          // the silent-read switch
	paramURL                             // a conformance resource's canonical url
	paramUpdated                         // _lastUpdated (date, every prefix but ne)
)

// searchParam is one search parameter a type supports; the same table
// drives the search handlers and the CapabilityStatement.
type searchParam struct {
	Name     string   // the name in the CapabilityStatement
	Type     string   // FHIR search parameter type
	Accepted []string // the spellings accepted, e.g. patient:identifier
	Kind     paramKind
	Doc      string
}

// resourceSpec is what the server offers for one resource type.
type resourceSpec struct {
	Type         string
	Profile      string
	Interactions []string
	Params       []searchParam
	Includes     []string // Source:param (or the national Source:param=value)
	// IncludeTarget is the type every include of this type adds ("": the
	// managing local authority's Organization): an _include naming another
	// target is not served, and is reported.
	IncludeTarget string
	Operations    []operation
	// Sorted: the type's searches take _sort (sortDoc), and its stored
	// time is its meta.lastUpdated.
	Sorted bool
	// SortDate: the type's searches also take _sort=date and -date
	// (dateSorts): plans and Flags by period start (sortDateDoc), an
	// AuditEvent by recorded.
	SortDate bool
	// AnyToken: any caller with a valid token may read the type (the
	// conformance resources); otherwise the RBAC table and scopes decide.
	AnyToken bool
	Doc      string
	// Topics are the subscription topics (canonical URLs) the type
	// offers: the Subscription type's, advertised with the backport's
	// CapabilityStatement extension. Its writes are not conditional.
	Topics []string
}

// operation is a FHIR operation a type offers.
type operation struct {
	Name       string // without $
	Definition string // the OperationDefinition's canonical URL
	Doc        string
}

// validateOp is $validate, on the four CP-IS types.
var validateOp = operation{Name: "validate", Definition: "http://hl7.org/fhir/OperationDefinition/Resource-validate",
	Doc: "POST [type]/$validate or [type]/[id]/$validate with the resource, or a Parameters resource with resource and optional profile " +
		"and mode (create or update; delete is not supported). Any caller with a valid token. It writes nothing and answers 200 with an " +
		"OperationOutcome listing every problem (base R4, the CP-IS profile, and any profile the resource claims or the profile parameter " +
		"names: an unknown profile is an error), or one informational issue when the resource is valid. The instance form validates the " +
		"body as an update of that id (its id must match) and never reads the stored resource, so it reveals nothing about it."}

// dataQualityOp is $data-quality, at system level.
var dataQualityOp = operation{Name: "data-quality", Definition: profiles.Base + "/OperationDefinition/data-quality",
	Doc: "GET [base]/$data-quality: the calling local authority's data-quality report on its own retained plans and its Organization, as one " +
		"OperationOutcome: an information issue per rule with its exact count, one per rule with more findings than are listed saying how many " +
		"are not, then the findings listed (at most CPIS_DQ_MAX_PER_RULE, default 100, of each rule, by resource id), each its rule in details.coding " +
		"(https://fhir.cpis.dev/CodeSystem/data-quality-rule), the resource named by reference in diagnostics, never by NHS number, and the " +
		"element in expression. GET [base]/$data-quality?rule=[code]&_count=[1-1000] lists one rule's findings in full: a searchset Bundle " +
		"(total the rule's count, one OperationOutcome entry per finding) with an opaque next link while there are more; an unknown rule, " +
		"any other parameter or an altered page link is 400. Local authority systems with system/DataQuality.read (or system/*.read) only; others get 403. Another " +
		"authority's plans are never counted or shown. Not audited: it names no patient. A database failure is 503, never an empty report."}

// exportOp is $export (FHIR Bulk Data Access), at system level.
var exportOp = operation{Name: "export", Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
	Doc: "GET or POST [base]/$export with Prefer: respond-async (400 without it): the calling local authority's own current EpisodeOfCare, their " +
		"Flags, its Organization and the AuditEvents of its feed (as it is shown them), as NDJSON files. Parameters: _type (comma-separated, of " +
		"EpisodeOfCare, Flag, Organization, AuditEvent; any other type is 400), _since (a FHIR instant: resources updated, accesses recorded, after " +
		"it), _outputFormat (application/fhir+ndjson only); any other parameter is 400. The kick-off answers 202 with Content-Location, the status " +
		"URL; a poll answers 202 with X-Progress and Retry-After while it runs, then 200 with the manifest (requiresAccessToken true), or 500 with an " +
		"OperationOutcome if it failed (also when its server went away); DELETE on the status URL cancels and removes the files (202). Files are " +
		"served as application/fhir+ndjson to the same client (token sub and org_code) only; to anyone else the status and files are 404. One " +
		"export runs per authority at a time (409 otherwise). Exports expire (CPIS_EXPORT_EXPIRY, default 1h) and are then 404 and removed. Local " +
		"authority systems with system/Export.read (or system/*.read) only; others get 403. Each export is recorded as one AuditEvent naming the " +
		"authority and the counts, written before the manifest is first served (if it cannot be written the export fails), notifying nobody. " +
		"Patient- and Group-level export are not offered (400)."}

// conformanceSpec is a type of the server's own conformance resources:
// readable by any caller with a token, searchable by url.
func conformanceSpec(typ, doc string) resourceSpec {
	return resourceSpec{
		Type: typ, Interactions: []string{"read", "search-type"}, AnyToken: true, Doc: doc,
		Params: []searchParam{
			{Name: "url", Type: "uri", Accepted: []string{"url"}, Kind: paramURL,
				Doc: "The canonical URL, optionally with |version (1.0.0)."},
			idSearchParam(),
		},
	}
}

const silentDoc = "The silent-read switch: silent=true (or the header IsUnscheduledAccessEvent: false) marks a scheduled-care read. " +
	"It needs activity code B0170, writes no AuditEvent and sends the local authority no access notification. " +
	"Without it a read is unscheduled: it needs B0107 and is audited before the response is sent. " +
	"A silent read must name the patient: it is a search by NHS number; reads, vreads and history by id are always audited, and the switch there is 403."

func nhsParam(accepted ...string) searchParam {
	return searchParam{Name: "patient", Type: "token", Accepted: accepted, Kind: paramNHSNumber,
		Doc: "The patient's NHS number: https://fhir.nhs.uk/Id/nhs-number|{10 digits}. Required for health users."}
}

func idSearchParam() searchParam {
	return searchParam{Name: "_id", Type: "token", Accepted: []string{"_id"}, Kind: paramID, Doc: "Logical id."}
}

func silentSearchParam() searchParam {
	return searchParam{Name: "silent", Type: "token", Accepted: []string{"silent"}, Kind: paramSilent, Doc: silentDoc}
}

// specs lists every resource type the server serves.
func specs() []resourceSpec {
	return []resourceSpec{
		{
			Type: "Flag", Profile: profiles.FlagProfile,
			Interactions: []string{"read", "vread", "history-instance", "history-type", "search-type"},
			Params: []searchParam{
				nhsParam("patient:identifier", "patient.identifier", "subject:identifier", "subject.identifier"),
				idSearchParam(), silentSearchParam(), lastUpdatedParam(),
			},
			Includes:   []string{"Flag:author"},
			Operations: []operation{validateOp},
			Sorted:     true,
			SortDate:   true,
			Doc: "The CP-IS alert, one per plan, derived by the server from the EpisodeOfCare (same id). Flags cannot be written (405)." + sortDoc + sortDateDoc +
				" GET Flag/_history is a local authority's own Flags' versions (the plans' versions as Flags; a plan's deletion is not a Flag version), " +
				"newest first, optionally _since an instant; health users get 403.",
		},
		{
			Type: "CareTeam", Profile: profiles.CareTeamProfile,
			Interactions: []string{"read", "vread", "history-instance", "search-type"},
			Params: []searchParam{
				nhsParam("patient:identifier", "patient.identifier", "subject:identifier", "subject.identifier"),
				silentSearchParam(),
			},
			Doc: "The national CP-IS API's answer about a plan: one CareTeam per plan (same id as the EpisodeOfCare), with the managing " +
				"local authority and its current office-hours (rank 1) and emergency duty team (rank 2) numbers. Read and audited as the Flag; " +
				"CareTeams cannot be written (405). Its versions are the plan's (vread and _history audited as the Flag's), each rendered " +
				"with the local authority's numbers as they are now.",
		},
		{
			Type: "EpisodeOfCare", Profile: profiles.EpisodeOfCareProfile,
			Interactions: []string{"read", "vread", "history-instance", "history-type", "search-type", "update", "patch", "create", "delete"},
			Params: []searchParam{
				nhsParam("patient:identifier", "patient.identifier"),
				{Name: "identifier", Type: "token", Accepted: []string{"identifier"}, Kind: paramIdentifier,
					Doc: "The local authority's own plan identifier, system|value; also the condition of a conditional update."},
				idSearchParam(), silentSearchParam(), lastUpdatedParam(),
			},
			Includes:   []string{"EpisodeOfCare:organization"},
			Operations: []operation{validateOp},
			Sorted:     true,
			SortDate:   true,
			Doc: "A child's plan (CPP, LAC or UCPP against the mother's NHS number), written by the managing local authority." + sortDoc + sortDateDoc +
				" GET EpisodeOfCare/_history (history-type) is for local authority systems only, and shows only the versions of plans they managed, " +
				"deletions included, newest first, optionally _since an instant, paged with sealed links (_count, at most 1000); it is audited like " +
				"an instance history (one AuditEvent per child on the page, before the answer; not notified). Health users get 403: they read a " +
				"child's plans by NHS number. Instance histories take _since and _at.",
		},
		{
			Type: "Organization", Profile: profiles.OrganizationProfile,
			Interactions: []string{"read", "vread", "history-instance", "history-type", "search-type", "update", "patch", "create"},
			Params: []searchParam{
				{Name: "identifier", Type: "token", Accepted: []string{"identifier"}, Kind: paramIdentifier,
					Doc: "The local authority's ODS code: https://fhir.nhs.uk/Id/ods-organization-code|{code}."},
				idSearchParam(), silentSearchParam(), lastUpdatedParam(),
			},
			Operations: []operation{validateOp},
			Sorted:     true,
			Doc: "The local authority, with its office-hours and emergency duty team phone numbers." + sortDoc +
				" GET Organization/_history is a local authority's own Organization's versions, newest first, optionally _since an instant; " +
				"health users get 403.",
		},
		{
			Type: "AuditEvent", Profile: profiles.AuditEventProfile,
			Interactions: []string{"search-type"},
			Params: []searchParam{
				nhsParam("patient:identifier", "patient.identifier", "entity:identifier", "entity.identifier"),
				{Name: "date", Type: "date", Accepted: []string{"date"}, Kind: paramDate,
					Doc: "The local authority's notification feed: every access to its children recorded at or after the date (ge or gt), oldest first, paged with stable cursors."},
				silentSearchParam(),
			},
			Includes:      []string{"AuditEvent:agent", nationalRoleInclude},
			IncludeTarget: "PractitionerRole",
			Operations:    []operation{validateOp},
			SortDate:      true,
			Doc: "Access history. By patient: the 25 most recent accesses, newest first, one per user per 24 hours. By date: the local authority's feed. " +
				auditSortDoc +
				"_include=AuditEvent:agent (or :PractitionerRole), or the national CP-IS API's " + nationalRoleInclude + ", adds one " +
				"PractitionerRole (CPIS-PractitionerRole) per person and role who accessed, search.mode include, each AuditEvent's agent " +
				"referencing it; derived from the AuditEvents shown, nothing else is read.",
		},
		{
			Type: "Subscription", Profile: notify.SubscriptionProfile,
			Interactions: []string{"read", "search-type", "create", "update", "delete"},
			Operations: []operation{
				{Name: "status", Definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
					Doc: "GET Subscription/[id]/$status: a searchset Bundle holding the subscription-status Parameters (type query-status): status, " +
						"events-since-subscription-start (the last event number given)."},
				{Name: "events", Definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
					Doc: "GET Subscription/[id]/$events?eventsSinceNumber=&eventsUntilNumber=&content=: past events by number (at most 100), as a " +
						"notification Bundle (type query-event): what an endpoint missed, with the same focus and content as the notifications. " +
						"Acknowledged events are removed after the retention period: a range reaching them answers 410."},
			},
			Topics: []string{notify.TopicURL},
			Doc: "A local authority's push notification of unscheduled accesses to its children (HL7 Subscriptions R5 Backport for R4, rest-hook; " +
				"local authority systems with system/Subscription.* only; another authority's are 404). criteria is the topic " + notify.TopicURL +
				", whose events are exactly the authority's feed (AuditEvent?date=), in order, numbered per subscription from 1 without gaps. " +
				"channel.endpoint must be https:// (http:// only to loopback addresses); channel.payload application/fhir+json with " +
				"backport-payload-content empty, id-only (the default: focus AuditEvent/[id]) or full-resource (the AuditEvent as the authority's " +
				"feed serves it); channel.header values are stored and sent, never returned; backport-heartbeat-period, backport-timeout and " +
				"backport-max-count are honoured; one backport-filter-criteria, EpisodeOfCare?type= with plan type codes (CPP, LAC, UCPP, comma-separated), " +
				"narrows the events to accesses to children on a plan of those types, numbered without gaps; an authority holds at most " +
				"CPIS_NOTIFY_MAX_PER_LA subscriptions (10 by default; 422 beyond). A handshake is sent on create (and on an update to requested): " +
				"the subscription becomes active when the endpoint answers 2xx, error when not. Delivery is at-least-once from a durable outbox: " +
				"after failures it retries with backoff, resuming at the first unacknowledged event; after repeated failures it turns to error " +
				"(update it to requested to resume). Delete stops delivery at once.",
		},
		conformanceSpec("StructureDefinition", "The CP-IS profiles of EpisodeOfCare, Flag, Organization and AuditEvent, each with its differential and full snapshot."),
		conformanceSpec("CodeSystem", "The CP-IS code systems: plan-type (CPP, LAC, UCPP), la-contact-purpose (office-hours, emergency-duty-team) and "+
			"data-quality-rule (the rules of the $data-quality report, in its issues' details)."),
		conformanceSpec("ValueSet", "The value sets the profiles bind to: plan-type (with the SNOMED CT synonyms of CPP and LAC) and la-contact-purpose."),
	}
}

// param finds the parameter a name (with modifier or chain) selects.
func (r *resourceSpec) param(raw string) *searchParam {
	for i := range r.Params {
		for _, a := range r.Params[i].Accepted {
			if a == raw {
				return &r.Params[i]
			}
		}
	}
	return nil
}

// nationalRoleInclude is the _include the national CP-IS API publishes for
// the access history's PractitionerRoles, exactly as published (it is not
// standard FHIR).
const nationalRoleInclude = "AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED"

// includes reports whether the type serves inc: one of its includes, with
// no target or the one it adds.
func (r *resourceSpec) includes(inc fhir.Include) bool {
	target := r.IncludeTarget
	if target == "" {
		target = "Organization"
	}
	if inc.Target != "" && inc.Target != target {
		return false
	}
	for _, name := range r.Includes {
		if name == inc.Name() {
			return true
		}
	}
	return false
}
