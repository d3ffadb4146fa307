package auth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

// RBAC maps national RBAC activity codes to permissions.
type RBAC struct {
	table map[string][]Permission
}

// DefaultRBACJSON is the built-in table, in the format CPIS_RBAC_FILE uses:
// activity code → list of "Type.access" (access: read or silent-read).
const DefaultRBACJSON = `{
  "B0107": ["Flag.read", "EpisodeOfCare.read", "Organization.read", "AuditEvent.read"],
  "B0170": ["Flag.silent-read", "EpisodeOfCare.silent-read", "Organization.silent-read", "AuditEvent.silent-read"]
}`

// DefaultRBAC returns the built-in table: B0107 View CP-IS Flag (reads
// that notify the LA) and B0170 View CP-IS Flag without sending an Access to
// Service Notification (silent reads only).
func DefaultRBAC() *RBAC {
	r, err := ParseRBAC([]byte(DefaultRBACJSON))
	if err != nil {
		panic("auth: built-in RBAC table: " + err.Error())
	}
	return r
}

// LoadRBAC reads and validates an RBAC table file.
func LoadRBAC(path string) (*RBAC, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the RBAC file: %w", err)
	}
	return ParseRBAC(b)
}

var activityCode = regexp.MustCompile(`^[A-Z][0-9]{4}$`)

// ParseRBAC validates an RBAC table: activity codes of the national form
// (B0107), permissions naming a known type and read or silent-read. User
// roles can never be granted write.
func ParseRBAC(b []byte) (*RBAC, error) {
	var raw map[string][]string
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("the RBAC table is not a JSON object of activity code to permission list: %w", err)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("the RBAC table is empty")
	}
	r := &RBAC{table: map[string][]Permission{}}
	codes := make([]string, 0, len(raw))
	for code := range raw {
		codes = append(codes, code)
	}
	sort.Strings(codes)
	for _, code := range codes {
		if !activityCode.MatchString(code) {
			return nil, fmt.Errorf("RBAC table: %q is not an activity code (like B0107)", code)
		}
		for _, ps := range raw[code] {
			typ, acc, ok := strings.Cut(ps, ".")
			if !ok || !knownType(typ) {
				return nil, fmt.Errorf("RBAC table: %s: %q must be Type.access with Type one of %s", code, ps, strings.Join(Types(), ", "))
			}
			var a Access
			switch acc {
			case "read":
				a = Read
			case "silent-read":
				a = SilentRead
			case "write":
				return nil, fmt.Errorf("RBAC table: %s: %q: health users cannot be granted write", code, ps)
			default:
				return nil, fmt.Errorf("RBAC table: %s: %q: access must be read or silent-read", code, ps)
			}
			r.table[code] = append(r.table[code], Permission{typ, a})
		}
	}
	return r, nil
}

// Permissions returns what the activity codes grant together.
func (r *RBAC) Permissions(codes []string) []Permission {
	var out []Permission
	for _, c := range codes {
		out = append(out, r.table[c]...)
	}
	return out
}
