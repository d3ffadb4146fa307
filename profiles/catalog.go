package profiles

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"sort"
	"time"
)

// Artifact is one of the server's conformance resources: a
// StructureDefinition, CodeSystem or ValueSet, as served.
type Artifact struct {
	Type    string // StructureDefinition, CodeSystem or ValueSet
	ID      string
	URL     string
	Version string
	Body    []byte // compact JSON
}

// Catalog holds the project's conformance resources and validates
// resources against the profiles among them. Build one with Load; it is
// read-only and safe for concurrent use.
type Catalog struct {
	loc       *time.Location
	artifacts []*Artifact
	byURL     map[string]*Artifact
	profiles  map[string]*profile // by canonical URL
	byType    map[string]*profile // the CP-IS profile of each resource type
	valueSets map[string]*valueSet
	codes     map[string]*codeSystem // by canonical URL
}

// Load reads the embedded definitions. Plan dates without a time are read
// in loc (Europe/London).
func Load(loc *time.Location) (*Catalog, error) {
	if loc == nil {
		return nil, fmt.Errorf("profiles: a location is required")
	}
	c := &Catalog{loc: loc, byURL: map[string]*Artifact{}, profiles: map[string]*profile{}, byType: map[string]*profile{},
		valueSets: map[string]*valueSet{}, codes: map[string]*codeSystem{}}
	files, err := fs.Glob(definitionFiles, "definitions/*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var vsBodies [][]byte
	for _, name := range files {
		raw, err := definitionFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			URL          string `json:"url"`
			Version      string `json:"version"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, fmt.Errorf("profiles: %s: %w", name, err)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, err
		}
		a := &Artifact{Type: head.ResourceType, ID: head.ID, URL: head.URL, Version: head.Version, Body: buf.Bytes()}
		if a.ID == "" || a.URL == "" || c.byURL[a.URL] != nil {
			return nil, fmt.Errorf("profiles: %s: needs a unique url and an id", name)
		}
		c.artifacts = append(c.artifacts, a)
		c.byURL[a.URL] = a
		switch a.Type {
		case "StructureDefinition":
			p, err := parseProfile(raw)
			if err != nil {
				return nil, fmt.Errorf("profiles: %s: %w", name, err)
			}
			if c.byType[p.typ] != nil {
				return nil, fmt.Errorf("profiles: two profiles for %s", p.typ)
			}
			c.profiles[p.url], c.byType[p.typ] = p, p
		case "CodeSystem":
			cs, err := parseCodeSystem(raw)
			if err != nil {
				return nil, fmt.Errorf("profiles: %s: %w", name, err)
			}
			c.codes[cs.url] = cs
		case "ValueSet":
			vsBodies = append(vsBodies, raw)
		default:
			return nil, fmt.Errorf("profiles: %s: unexpected %s", name, a.Type)
		}
	}
	for _, raw := range vsBodies {
		vs, err := c.parseValueSet(raw)
		if err != nil {
			return nil, err
		}
		c.valueSets[vs.url] = vs
	}
	for _, p := range c.profiles {
		if err := c.check(p); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// check makes sure every rule a profile names is one the server enforces
// and every required binding is to a value set it knows: a profile the
// validator cannot apply in full is a start-up error, not a silent pass.
func (c *Catalog) check(p *profile) error {
	var err error
	p.root.walk(func(e *element) {
		for _, k := range e.rules {
			if _, ok := rules[k]; !ok && err == nil {
				err = fmt.Errorf("profiles: %s: %s names rule %s, which the server does not implement", p.url, e.id, k)
			}
		}
		if e.binding != "" && c.valueSets[e.binding] == nil && err == nil {
			err = fmt.Errorf("profiles: %s: %s is bound to unknown value set %s", p.url, e.id, e.binding)
		}
	})
	return err
}

// Artifact finds a conformance resource by type and id.
func (c *Catalog) Artifact(typ, id string) (*Artifact, bool) {
	for _, a := range c.artifacts {
		if a.Type == typ && a.ID == id {
			return a, true
		}
	}
	return nil, false
}

// Search lists the conformance resources of a type, all of them or those
// with the canonical url (a version suffix, url|1.0.0, must match the
// artifact's version).
func (c *Catalog) Search(typ, url string) []*Artifact {
	var out []*Artifact
	for _, a := range c.artifacts {
		if a.Type == typ && (url == "" || a.URL == url || url == a.URL+"|"+a.Version) {
			out = append(out, a)
		}
	}
	return out
}

// ProfileOf is the CP-IS profile URL of a resource type, or "".
func (c *Catalog) ProfileOf(typ string) string {
	if p := c.byType[typ]; p != nil {
		return p.url
	}
	return ""
}
