// Package fhir holds the FHIR R4 mechanics the server needs: decoding and
// validating resource JSON through google/fhir, OperationOutcome and Bundle
// builders, search-parameter parsing, NHS number and ODS checks, and the one
// error type that carries an HTTP status and NHS-style error code.
package fhir
