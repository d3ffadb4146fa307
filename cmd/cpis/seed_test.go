package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
	"cpis/store"
	"cpis/store/sqlite"
)

var summaryLine = regexp.MustCompile(`^seeded (\d+) children: (\d+) plans \(CPP (\d+), LAC (\d+), UCPP (\d+)\), (\d+) local authorities, \S+, \d+ resources/s$`)

// runSeed runs `cpis seed` and returns its summary line ("seeded …") and
// the line before it.
func runSeed(t *testing.T, vars map[string]string, args ...string) (summary, detail string) {
	t.Helper()
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), append([]string{"seed"}, args...), env(vars), &out))
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	for i := 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "seeded ") {
			return lines[i], lines[i-1]
		}
	}
	require.Fail(t, "no summary line", out.String())
	return "", ""
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}

// TestSeed loads 300 children through the real upload path, checks what
// reached the store, and runs again to find nothing new.
func TestSeed(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"CPIS_DATA_DIR": dir}
	args := []string{"--children", "300", "--as-of", time.Now().UTC().Format("2006-01-02")}
	summary, detail := runSeed(t, vars, args...)
	m := summaryLine.FindStringSubmatch(summary)
	require.NotNil(t, m, "summary: %q", summary)
	assert.Equal(t, "300", m[1])
	plans := atoi(t, m[2])
	assert.Equal(t, plans, atoi(t, m[3])+atoi(t, m[4])+atoi(t, m[5]))
	assert.GreaterOrEqual(t, plans, 300)
	for i, typ := range []string{"CPP", "LAC", "UCPP"} {
		assert.Positive(t, atoi(t, m[3+i]), "some %s plans", typ)
	}
	assert.Equal(t, "20", m[6])
	assert.Contains(t, detail, "resources: "+strconv.Itoa(plans+20)+" created, 0 updated, 0 unchanged")

	st, err := sqlite.Open(dir, sqlite.Options{})
	require.NoError(t, err)
	ctx := context.Background()
	eoc, total, err := st.Search(ctx, store.Query{Type: "EpisodeOfCare", Limit: 1000, Count: true})
	require.NoError(t, err)
	assert.Equal(t, plans, total, "every plan is stored")
	_, flags, err := st.Search(ctx, store.Query{Type: "Flag", Count: true})
	require.NoError(t, err)
	assert.Equal(t, plans, flags, "each with its Flag")
	orgs, _, err := st.Search(ctx, store.Query{Type: "Organization", Limit: 100})
	require.NoError(t, err)
	require.Len(t, orgs, 20)

	owners := map[string]int{}
	ended, expired := 0, 0
	for _, r := range eoc {
		assert.EqualValues(t, 1, r.Version)
		assert.True(t, fhir.ValidNHSNumber(r.Subject), "valid NHS number")
		assert.True(t, strings.HasPrefix(r.Subject, "999"), "from the test-looking range")
		owners[r.Owner]++
		if !r.End.IsZero() {
			ended++
			if r.End.Before(time.Now().AddDate(0, 0, -365)) {
				expired++
			}
		}
		var plan struct {
			Type []fhir.CodeableConcept `json:"type"`
		}
		require.NoError(t, json.Unmarshal(r.Body, &plan))
		if plan.Type[0].Coding[0].Code == "UCPP" {
			assert.True(t, strings.HasPrefix(r.Subject, "9995"), "an unborn child's plan is held against the mother's NHS number")
		}
	}
	assert.Len(t, owners, 20, "spread over every local authority")
	assert.Positive(t, ended, "some plans have ended")
	assert.Positive(t, expired, "a few ended before the retention period")
	assert.Less(t, expired, ended)
	for _, o := range orgs {
		var org struct {
			Contact []struct {
				Purpose fhir.CodeableConcept `json:"purpose"`
				Telecom []fhir.ContactPoint  `json:"telecom"`
			} `json:"contact"`
		}
		require.NoError(t, json.Unmarshal(o.Body, &org))
		require.Len(t, org.Contact, 2)
		assert.Equal(t, "office-hours", org.Contact[0].Purpose.Coding[0].Code)
		assert.Equal(t, "emergency-duty-team", org.Contact[1].Purpose.Coding[0].Code)
		assert.NotEmpty(t, org.Contact[1].Telecom[0].Value)
	}
	require.NoError(t, st.Close())

	t.Run("rerun-creates-nothing", func(t *testing.T) {
		again, detail := runSeed(t, vars, args...)
		assert.Equal(t, m[1:7], summaryLine.FindStringSubmatch(again)[1:7], "the same data")
		assert.Contains(t, detail, "resources: 0 created, 0 updated, "+strconv.Itoa(plans+20)+" unchanged")
		st, err := sqlite.Open(dir, sqlite.Options{})
		require.NoError(t, err)
		defer st.Close()
		recs, total, err := st.Search(ctx, store.Query{Type: "EpisodeOfCare", Limit: 1000, Count: true})
		require.NoError(t, err)
		assert.Equal(t, plans, total)
		for _, r := range recs {
			require.EqualValues(t, 1, r.Version, "unchanged plans keep their version")
		}
	})

	t.Run("a-nurse-finds-a-seeded-child", func(t *testing.T) {
		s := start(t, vars)
		nurse := mint(t, vars, "--kind", "user", "--activity", "B0107")
		plansOf := map[string]int{}
		for _, r := range eoc {
			plansOf[r.Subject]++
		}
		var child string
		for _, r := range eoc {
			if r.End.IsZero() && plansOf[r.Subject] == 1 {
				child = r.Subject
				break
			}
		}
		require.NotEmpty(t, child)
		code, body := call(t, "GET", "http://"+s.addr+"/FHIR/R4/Flag?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+child+"&_include=Flag:author", nurse, "")
		require.Equal(t, 200, code, body)
		assert.EqualValues(t, 1, body["total"])
		assert.Len(t, body["entry"], 2, "the Flag and its local authority")
	})
}

func TestSeedRefuses(t *testing.T) {
	cases := []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{"no-children", map[string]string{}, nil, "--children"},
		{"too-many-las", map[string]string{}, []string{"--children", "1", "--la-count", "153"}, "--la-count"},
		{"bad-as-of", map[string]string{}, []string{"--children", "1", "--as-of", "soon"}, "--as-of"},
		{"jwks-configured", map[string]string{"CPIS_JWKS_FILE": "/etc/jwks.json", "CPIS_JWT_ISSUER": "i", "CPIS_JWT_AUDIENCE": "a"},
			[]string{"--children", "1"}, "local mode only"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.vars["CPIS_DATA_DIR"] = t.TempDir()
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"seed"}, tc.args...), env(tc.vars), &out)
			require.Error(t, err)
			var ce *configError
			require.ErrorAs(t, err, &ce)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}
