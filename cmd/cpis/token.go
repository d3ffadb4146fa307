package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"cpis/auth"
)

// token mints a token signed with the local key and prints only the token,
// so it can be pasted into Postman or captured in a shell variable.
func token(args []string, getenv func(string) string, stdout io.Writer) error {
	var (
		kind, name, userID, roleID, roleName, roleCode string
		activities, org, orgName, clientID, scopes     string
		lifetime                                       time.Duration
	)
	cfg, _, err := loadConfigWith("token", args, getenv, stdout, func(fs *flag.FlagSet) {
		fs.StringVar(&kind, "kind", "", "user (a health professional, CIS2-style) or system (a local authority)")
		fs.StringVar(&name, "name", "Dr Jane Smith", "user: the user's name")
		fs.StringVar(&userID, "user-id", "555021935107", "user: SDS user id (nhsid_useruid and sub)")
		fs.StringVar(&roleID, "role-id", "555021936109", "user: the selected role's person_roleid")
		fs.StringVar(&roleName, "role-name", `"Clinical":"Clinical Provision":"Nurse Access Role"`, "user: role name")
		fs.StringVar(&roleCode, "role-code", "S8000:G8000:R8001", "user: role code")
		fs.StringVar(&activities, "activity", "B0107", "user: comma-separated RBAC activity codes (B0107 non-silent reads, B0170 silent reads)")
		fs.StringVar(&org, "org", "", "ODS code of the organisation (default RBA for users, LA001 for systems)")
		fs.StringVar(&orgName, "org-name", "", "organisation name")
		fs.StringVar(&clientID, "client-id", "la-case-system", "system: the client id (sub)")
		fs.StringVar(&scopes, "scope", "system/EpisodeOfCare.* system/Flag.read system/Organization.* system/AuditEvent.read system/DataQuality.read system/Subscription.* system/Export.read", "system: space-separated SMART scopes")
		fs.DurationVar(&lifetime, "lifetime", time.Hour, "how long the token is valid (at most 24h)")
	})
	if err != nil {
		return err
	}
	if !cfg.localMode() {
		return badConfig("cpis token works in local mode only: unset CPIS_JWKS_FILE and CPIS_JWKS_URL, or get tokens from your identity provider")
	}
	if lifetime <= 0 || lifetime > auth.MaxLifetime {
		return badConfig("token: --lifetime must be between 1s and 24h")
	}
	key, _, err := auth.LoadOrCreateLocalKey(cfg.DataDir)
	if err != nil {
		return err
	}
	now := time.Now()
	var tok string
	switch kind {
	case "user":
		if org == "" {
			org, orgName = "RBA", orDefault(orgName, "Somerset NHS Foundation Trust")
		}
		tok, err = key.MintUser(auth.UserToken{
			Name: name, UserID: userID, RoleID: roleID, RoleName: roleName, RoleCode: roleCode,
			OrgCode: org, OrgName: orgName, Activities: splitList(activities),
		}, cfg.Issuer, cfg.Audience, now, lifetime)
	case "system":
		if org == "" {
			org, orgName = "LA001", orDefault(orgName, "Local Authority 001")
		}
		tok, err = key.MintSystem(auth.SystemToken{ClientID: clientID, OrgCode: org, OrgName: orgName, Scopes: strings.Fields(scopes)},
			cfg.Issuer, cfg.Audience, now, lifetime)
	default:
		return badConfig("token: --kind must be user or system")
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
