// Package auth verifies bearer tokens (NHS CIS2 user tokens and local
// authority system tokens), turns them into a Principal with permissions
// from the RBAC table or SMART scopes, and holds the local signing key.
package auth

import "strings"

// Kind is the kind of caller.
type Kind int

// The kinds of caller.
const (
	// User is a health professional signed in with NHS CIS2.
	User Kind = iota + 1
	// System is a local authority's case-management system.
	System
)

func (k Kind) String() string {
	switch k {
	case User:
		return "user"
	case System:
		return "system"
	}
	return "unknown"
}

// Access is what a permission allows on a resource type.
type Access int

// The kinds of access.
const (
	// Read is a read that notifies: it is audited and the LA is told.
	Read Access = iota + 1
	// SilentRead is a read from scheduled care: no access notification.
	SilentRead
	// Write creates, updates or deletes.
	Write
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case SilentRead:
		return "silent-read"
	case Write:
		return "write"
	}
	return "none"
}

// Permission is one access to one resource type.
type Permission struct {
	Type   string
	Access Access
}

func (p Permission) String() string { return p.Type + "." + p.Access.String() }

// Types are the resource types permissions can name. DataQuality and Export
// are not resource types: system/DataQuality.read asks for the data-quality
// report, system/Export.read for the bulk export ($export); system/*.read
// grants both, as stock bulk-data clients ask for it.
func Types() []string {
	return []string{"EpisodeOfCare", "Flag", "Organization", "AuditEvent", "DataQuality", "Subscription", "Export"}
}

// Principal is the authenticated caller.
type Principal struct {
	Kind    Kind
	Subject string // token sub: the user's UID or the system's client id

	// User callers.
	Name     string // the user's name
	UserID   string // SDS user id (nhsid_useruid)
	RoleID   string // the selected role (person_roleid)
	RoleName string
	RoleCode string

	// The organisation acting: the user's role's organisation, or the
	// local authority a system token speaks for.
	OrgCode string
	OrgName string

	// Scopes of a system token, as sent.
	Scopes []string

	perms map[Permission]bool
}

// Allows reports whether the principal holds the permission.
func (p *Principal) Allows(typ string, a Access) bool {
	if p == nil {
		return false
	}
	return p.perms[Permission{typ, a}]
}

// Permissions lists what the principal holds, for diagnostics and tests.
func (p *Principal) Permissions() []string {
	var out []string
	for _, t := range Types() {
		for _, a := range []Access{Read, SilentRead, Write} {
			if p.perms[Permission{t, a}] {
				out = append(out, Permission{t, a}.String())
			}
		}
	}
	return out
}

// IsLA reports whether the caller is a local authority system.
func (p *Principal) IsLA() bool { return p != nil && p.Kind == System }

// NewPrincipal builds a principal holding perms. It is how tests and the
// verifier construct one; the permission set cannot be changed afterwards.
func NewPrincipal(base Principal, perms []Permission) *Principal {
	p := base
	p.perms = make(map[Permission]bool, len(perms))
	for _, perm := range perms {
		p.perms[perm] = true
	}
	return &p
}

// scopePermissions maps SMART system scopes to permissions:
// system/Type.read|write|*, system/*.read, and the v2 forms .cruds.
func scopePermissions(scopes []string) []Permission {
	var out []Permission
	for _, s := range scopes {
		rest, ok := strings.CutPrefix(s, "system/")
		if !ok {
			continue
		}
		typ, acc, ok := strings.Cut(rest, ".")
		if !ok {
			continue
		}
		if i := strings.IndexByte(acc, '?'); i >= 0 {
			// v2 scopes may carry search constraints; this server does not
			// narrow by them, so a constrained scope grants nothing.
			continue
		}
		var types []string
		if typ == "*" {
			types = Types()
		} else if knownType(typ) {
			types = []string{typ}
		}
		var read, write bool
		switch acc {
		case "read":
			read = true
		case "write":
			write = true
		case "*":
			read, write = true, true
		default:
			if !v2Scope(acc) {
				continue
			}
			read = strings.ContainsAny(acc, "rs")
			write = strings.ContainsAny(acc, "cud")
		}
		for _, t := range types {
			if read {
				out = append(out, Permission{t, Read})
			}
			if write && writable(t) {
				out = append(out, Permission{t, Write})
			}
		}
	}
	return out
}

// v2Scope reports whether s is a SMART v2 permission string: a non-empty
// subsequence of "cruds" in that order.
func v2Scope(s string) bool {
	if s == "" {
		return false
	}
	order := "cruds"
	i := 0
	for j := 0; j < len(s); j++ {
		k := strings.IndexByte(order[i:], s[j])
		if k < 0 {
			return false
		}
		i += k + 1
	}
	return true
}

func knownType(t string) bool {
	for _, k := range Types() {
		if k == t {
			return true
		}
	}
	return false
}

// writable says which types clients may write: Flags are derived and
// AuditEvents are the server's own. Subscriptions are a local authority's
// notification subscriptions (system/Subscription.*).
func writable(t string) bool {
	return t == "EpisodeOfCare" || t == "Organization" || t == "Subscription"
}
