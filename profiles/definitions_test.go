package profiles

import (
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
	"cpis/profiles/internal/snapshot"
)

// The embedded definitions are valid FHIR R4: google/fhir parses each
// with validation and finds nothing wrong.
func TestDefinitionsAreValidR4(t *testing.T) {
	codec, err := fhir.NewCodec()
	require.NoError(t, err)
	files, err := fs.Glob(definitionFiles, "definitions/*.json")
	require.NoError(t, err)
	require.Len(t, files, 12)
	for _, name := range files {
		t.Run(path.Base(name), func(t *testing.T) {
			b, err := definitionFiles.ReadFile(name)
			require.NoError(t, err)
			res, issues := codec.Decode(b)
			require.NotNil(t, res, "%v", issues)
			assert.Empty(t, issues)
			want := strings.SplitN(strings.TrimSuffix(path.Base(name), ".json"), "-", 2)
			assert.Equal(t, want[0], res.Type, "the file name says the type")
			assert.Equal(t, want[1], res.ID(), "the file name says the id")
			url, _ := res.Fields["url"].(string)
			assert.Equal(t, Base+"/"+res.Type+"/"+res.ID(), url, "canonical URL")
			if res.Type == "StructureDefinition" {
				kind := "resource"
				if res.Fields["type"] == "Extension" {
					kind = "complex-type"
				}
				assert.Equal(t, kind, res.Fields["kind"])
				assert.Equal(t, "constraint", res.Fields["derivation"])
				assert.Equal(t, "4.0.1", res.Fields["fhirVersion"])
				assert.NotEmpty(t, res.Fields["differential"].(map[string]any)["element"])
				assert.NotEmpty(t, res.Fields["snapshot"].(map[string]any)["element"])
			}
		})
	}
}

// The committed StructureDefinitions are exactly what `go generate` makes
// from the differentials and the base definitions: nobody edited a
// snapshot by hand, and no differential changed without its snapshot.
func TestSnapshotsAreGenerated(t *testing.T) {
	files, err := snapshot.Build("gen/base", "gen/differential")
	require.NoError(t, err)
	require.Len(t, files, 7)
	for name, want := range files {
		got, err := definitionFiles.ReadFile("definitions/" + name)
		require.NoError(t, err, "run go generate ./profiles")
		assert.True(t, string(want) == string(got), "definitions/%s is stale: run go generate ./profiles", name)
	}
}

// Each snapshot holds every element of the base resource, in the base's
// order, with the base's cardinality narrowed and never widened.
func TestSnapshotsCoverTheBase(t *testing.T) {
	for _, typ := range []string{"EpisodeOfCare", "Flag", "Organization", "AuditEvent", "CareTeam", "PractitionerRole"} {
		t.Run(typ, func(t *testing.T) {
			base := elementsOf(t, "gen/base/"+typ+".json", "")
			prof := map[string]map[string]any{}
			var order []string
			for _, e := range elementsOf(t, "", "definitions/StructureDefinition-CPIS-"+typ+".json") {
				prof[e["id"].(string)] = e
				order = append(order, e["id"].(string))
			}
			last := -1
			for _, b := range base {
				id := b["id"].(string)
				e, ok := prof[id]
				require.True(t, ok, "snapshot lacks %s", id)
				i := indexOf(order, id)
				assert.Greater(t, i, last, "%s out of order", id)
				last = i
				assert.GreaterOrEqual(t, e["min"].(float64), b["min"].(float64), "%s min widened", id)
				if b["max"] != "*" {
					assert.LessOrEqual(t, e["max"], b["max"], "%s max widened", id)
				}
			}
		})
	}
}

func elementsOf(t *testing.T, file, embedded string) []map[string]any {
	t.Helper()
	var b []byte
	var err error
	if embedded != "" {
		b, err = definitionFiles.ReadFile(embedded)
	} else {
		b, err = os.ReadFile(file)
	}
	require.NoError(t, err)
	var sd struct {
		Snapshot struct {
			Element []map[string]any `json:"element"`
		} `json:"snapshot"`
	}
	require.NoError(t, json.Unmarshal(b, &sd))
	return sd.Snapshot.Element
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}
