package handlers_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the expected issues of examples/resources/invalid")

const examples = "../examples"

// expectedIssue is one issue of an invalid example's sidecar file.
type expectedIssue struct {
	Severity    string `json:"severity"`
	Code        string `json:"code"`
	Expression  string `json:"expression,omitempty"`
	Diagnostics string `json:"diagnostics"`
}

func outcomeIssues(t *testing.T, r resp) []expectedIssue {
	t.Helper()
	var oo struct {
		Issue []struct {
			Severity string `json:"severity"`
			Details  struct {
				Coding []struct {
					Code string `json:"code"`
				} `json:"coding"`
			} `json:"details"`
			Diagnostics string   `json:"diagnostics"`
			Expression  []string `json:"expression"`
		} `json:"issue"`
	}
	require.NoError(t, json.Unmarshal(r.Body.Bytes(), &oo))
	var out []expectedIssue
	for _, is := range oo.Issue {
		e := expectedIssue{Severity: is.Severity, Diagnostics: is.Diagnostics}
		if len(is.Details.Coding) > 0 {
			e.Code = is.Details.Coding[0].Code
		}
		if len(is.Expression) > 0 {
			e.Expression = is.Expression[0]
		}
		out = append(out, e)
	}
	return out
}

func resourceType(t *testing.T, b []byte) string {
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	require.NoError(t, json.Unmarshal(b, &head))
	return head.ResourceType
}

// The example resources are golden files for the real validator: each
// valid one passes $validate, and each invalid one fails with exactly the
// issues in its .expected.json (rewrite them with go test -update).
func TestExampleResources(t *testing.T) {
	e := newEnv(t, backends()[0])
	la := e.laToken(la1)
	valid, err := filepath.Glob(filepath.Join(examples, "resources/valid/*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, valid)
	for _, p := range valid {
		t.Run("valid/"+filepath.Base(p), func(t *testing.T) {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			r := e.do(http.MethodPost, resourceType(t, b)+"/$validate", la, string(b))
			require.Equal(t, http.StatusOK, r.Code)
			assert.Equal(t, []string{"information"}, r.severities(), r.Body.String())
		})
	}
	invalid, err := filepath.Glob(filepath.Join(examples, "resources/invalid/*.json"))
	require.NoError(t, err)
	n := 0
	for _, p := range invalid {
		if strings.HasSuffix(p, ".expected.json") {
			continue
		}
		n++
		t.Run("invalid/"+filepath.Base(p), func(t *testing.T) {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			r := e.do(http.MethodPost, resourceType(t, b)+"/$validate", la, string(b))
			require.Equal(t, http.StatusOK, r.Code)
			got := outcomeIssues(t, r)
			sidecar := strings.TrimSuffix(p, ".json") + ".expected.json"
			if *update {
				var buf bytes.Buffer
				enc := json.NewEncoder(&buf)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				require.NoError(t, enc.Encode(got))
				require.NoError(t, os.WriteFile(sidecar, buf.Bytes(), 0o644))
			}
			wb, err := os.ReadFile(sidecar)
			require.NoError(t, err, "run go test ./handlers -run TestExampleResources -update")
			var want []expectedIssue
			require.NoError(t, json.Unmarshal(wb, &want))
			assert.Equal(t, want, got)
			for _, is := range got {
				assert.Equal(t, "error", is.Severity, "an invalid example fails")
			}
		})
	}
	require.NotZero(t, n)
}

// The sample Bundles hold only resources that validate.
func TestExampleBundles(t *testing.T) {
	e := newEnv(t, backends()[0])
	la := e.laToken(la1)
	files, err := filepath.Glob(filepath.Join(examples, "bundles/*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, p := range files {
		t.Run(filepath.Base(p), func(t *testing.T) {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			e.requireValidR4(b)
			var bn struct {
				Entry []struct {
					Resource json.RawMessage `json:"resource"`
				} `json:"entry"`
			}
			require.NoError(t, json.Unmarshal(b, &bn))
			require.NotEmpty(t, bn.Entry)
			for i, en := range bn.Entry {
				r := e.do(http.MethodPost, resourceType(t, en.Resource)+"/$validate", la, string(en.Resource))
				assert.Equal(t, []string{"information"}, r.severities(), "entry %d: %s", i, r.Body.String())
			}
		})
	}
}

// The Postman collection is the story the README tells, and newman runs
// it in CI. Here: every request asserts something, every variable it uses
// is defined, and the bodies it sends are the example files.
func TestPostmanCollection(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(examples, "cpis.postman_collection.json"))
	require.NoError(t, err)
	var col struct {
		Info struct {
			Schema string `json:"schema"`
		} `json:"info"`
		Item     []postmanItem `json:"item"`
		Variable []struct {
			Key string `json:"key"`
		} `json:"variable"`
	}
	require.NoError(t, json.Unmarshal(b, &col))
	assert.Equal(t, "https://schema.getpostman.com/json/collection/v2.1.0/collection.json", col.Info.Schema)

	eb, err := os.ReadFile(filepath.Join(examples, "cpis.postman_environment.json"))
	require.NoError(t, err)
	var envf struct {
		Values []struct {
			Key string `json:"key"`
		} `json:"values"`
	}
	require.NoError(t, json.Unmarshal(eb, &envf))
	defined := map[string]bool{}
	for _, v := range envf.Values {
		defined[v.Key] = true
	}
	for _, v := range col.Variable {
		defined[v.Key] = true
	}
	for _, k := range []string{"base_url", "la_token", "la2_token", "nurse_token", "gp_token"} {
		assert.True(t, defined[k], "the environment defines %s", k)
	}

	files := map[string]string{}
	for _, dir := range []string{"resources/valid", "resources/invalid", "bundles"} {
		ps, _ := filepath.Glob(filepath.Join(examples, dir, "*.json"))
		for _, p := range ps {
			fb, err := os.ReadFile(p)
			require.NoError(t, err)
			files[dir+"/"+filepath.Base(p)] = canonicalJSON(t, fb)
		}
	}
	uses := regexp.MustCompile(`\{\{([a-zA-Z0-9_]+)\}\}`)
	var requests int
	var walk func(items []postmanItem)
	walk = func(items []postmanItem) {
		for _, it := range items {
			if it.Request == nil {
				walk(it.Item)
				continue
			}
			requests++
			raw, _ := json.Marshal(it.Request)
			for _, m := range uses.FindAllStringSubmatch(string(raw), -1) {
				assert.True(t, defined[m[1]], "%s uses {{%s}}, which nothing defines", it.Name, m[1])
			}
			var tests string
			for _, ev := range it.Event {
				if ev.Listen == "test" {
					tests += strings.Join(ev.Script.Exec, "\n")
				}
			}
			assert.Contains(t, tests, "pm.test(", "%s asserts nothing", it.Name)
			if src := it.Request.Description; strings.HasPrefix(src, "Body: examples/") {
				name := strings.TrimPrefix(strings.Fields(src)[1], "examples/")
				want, ok := files[name]
				require.True(t, ok, "%s names %s, which is not an example", it.Name, name)
				assert.Equal(t, want, canonicalJSON(t, []byte(it.Request.Body.Raw)), "%s sends %s unchanged", it.Name, name)
			}
		}
	}
	walk(col.Item)
	assert.Greater(t, requests, 15)
}

type postmanItem struct {
	Name  string        `json:"name"`
	Item  []postmanItem `json:"item"`
	Event []struct {
		Listen string `json:"listen"`
		Script struct {
			Exec []string `json:"exec"`
		} `json:"script"`
	} `json:"event"`
	Request *struct {
		Description string `json:"description"`
		Body        struct {
			Raw string `json:"raw"`
		} `json:"body"`
	} `json:"request"`
}

func canonicalJSON(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(b, &v), "%s", b)
	out, err := json.Marshal(v)
	require.NoError(t, err)
	return string(out)
}
