// Package quality finds data-quality problems in one local authority's
// CP-IS data: plans that have probably outlived their purpose, duplicates,
// impossible dates, stale contact numbers and NHS-number corrections to
// confirm. It works on small fact structs the registry fills from store
// records, never on the store itself, and never sees two authorities' data
// at once: Report takes one LA's plans and its Organization.
//
// # Rules
//
// Each rule has a stable code in the CodeSystem
// https://fhir.cpis.dev/CodeSystem/data-quality-rule (RuleSystem) and a
// threshold in Thresholds (defaults in brackets; "more than" means the
// threshold itself does not trigger the rule). A plan is live when it is not
// deleted, its status is not entered-in-error, finished or cancelled, and its
// period has not ended: exactly the plans whose Flag is active.
//
//   - ucpp-overdue (warning): a live UCPP whose period.start is more than
//     UCPPMonths [10] months ago. The birth has probably happened: the plan
//     should move to the child's NHS number.
//   - cpp-review-overdue (information): a live CPP not updated for more than
//     CPPReviewMonths [6] months.
//   - lac-review-overdue (information): a live LAC not updated for more than
//     LACReviewMonths [6] months.
//   - duplicate-plan (warning): two or more live plans of the same type for
//     the same NHS number in this LA. One finding per group, on the plan with
//     the lowest id, naming the others.
//   - end-far-future (warning): a plan (not withdrawn) whose period.end is more
//     than EndFutureMonths [60] months after now.
//   - start-in-future (warning): a plan (not withdrawn) whose period.start is
//     more than StartFutureDays [0] days after now.
//   - organization-stale (information): the LA's Organization not updated for
//     more than OrganizationMonths [12] months: are the numbers still right?
//   - contact-numbers-identical (warning): the Organization's office-hours
//     and emergency-duty-team phone numbers are the same number (compared
//     digits only, +44 read as a leading 0).
//   - nhs-number-corrected (information): a live plan that replaced a plan
//     recorded in error for a different NHS number, listed so the LA can
//     confirm the correction. A plan W is withdrawn when it was deleted (a
//     tombstone: DELETE is "a plan recorded in error") or its status is
//     entered-in-error. A live plan R replaces W when R's NHS number differs
//     from W's and R shares one of W's identifiers (system|value), or R is
//     the only live plan of another NHS number with W's plan type and
//     period.start that was last written no earlier than a day before W
//     was withdrawn (in a large LA many plans start on one day: an
//     ambiguous match names no plan). W counts for
//     CorrectionDays [90] days after it was withdrawn (its Updated time);
//     then the correction is taken as confirmed. One finding per (R, W) pair,
//     on R, naming W. For a tombstone the facts are those of its last live
//     version, with Deleted set and Updated the deletion time.
//
// Single applies the rules that can be judged from one plan alone
// (ucpp-overdue, end-far-future, start-in-future) to a plan being written;
// Upload adds duplicate-plan against the writing LA's other plans for the
// same NHS number (the caller reads them within that LA's scope). They
// come back as warnings in the write's outcome and never refuse it. The
// review rules cannot fire on a plan just written (it was updated now).
//
// A report of a large authority is computed by a Scan: plans are given one
// at a time (from a store scan), each plan's own rules judged as it comes,
// and of the findings only those its Listing lists are kept (at most N per
// rule, or one rule's page after a Key), every rule's count exact; Report
// is a Scan that lists everything.
//
// Messages name resources by reference (EpisodeOfCare/id), never by NHS
// number, so a finding may be logged or exported as a metric label safely
// (metrics carry only the rule and the LA's ODS code).
package quality
