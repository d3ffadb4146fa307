package profiles

import "embed"

// The StructureDefinitions in definitions/ are generated: each
// differential in gen/differential gets its snapshot from the FHIR R4 base
// definitions in gen/base. The CodeSystems and ValueSets are written by
// hand.
//go:generate go run ./gen

// definitionFiles are the project's conformance resources: the six
// resource profiles, the la-contact-purpose extension, the CodeSystems
// and ValueSets they bind to, and the code system of the data-quality
// rules (package quality).
//
//go:embed definitions/*.json
var definitionFiles embed.FS
