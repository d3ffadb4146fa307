package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"cpis/auth"
)

// config is the server's configuration: environment variables, each with a
// matching flag that wins over it.
type config struct {
	Addr          string
	BaseURL       string
	DataDir       string
	MongoURI      string
	MongoDatabase string
	JWKSFile      string
	JWKSURL       string
	Issuer        string
	Audience      string
	RBACFile      string
	RetentionDays int
	// MaxTokenLifetime bounds a token's exp - iat (CPIS_MAX_TOKEN_LIFETIME).
	MaxTokenLifetime time.Duration
	maxTokenLifetime string
	LogLevel         string
	DebugAddr        string
}

// setting is one configuration item.
type setting struct {
	env, flag, def, usage string
	dst                   *string
}

func (c *config) settings() []setting {
	return []setting{
		{"CPIS_ADDR", "addr", ":8080", "listen address", &c.Addr},
		{"CPIS_BASE_URL", "base-url", "http://localhost:8080/FHIR/R4", "public FHIR base used in fullUrl, Location and paging links", &c.BaseURL},
		{"CPIS_DATA_DIR", "data-dir", "./data", "directory of the embedded store and the local signing key", &c.DataDir},
		{"CPIS_MONGODB_URI", "mongodb-uri", "", "MongoDB URI; when set, MongoDB is the store instead of the embedded one", &c.MongoURI},
		{"CPIS_MONGODB_DATABASE", "mongodb-database", "cpis", "database name in MongoDB", &c.MongoDatabase},
		{"CPIS_JWKS_FILE", "jwks-file", "", "file of trusted token-signing keys (JWKS); turns local mode off", &c.JWKSFile},
		{"CPIS_JWKS_URL", "jwks-url", "", "URL of trusted token-signing keys (JWKS); turns local mode off", &c.JWKSURL},
		{"CPIS_JWT_ISSUER", "jwt-issuer", "", "required token iss (local mode: " + auth.LocalIssuer + ")", &c.Issuer},
		{"CPIS_JWT_AUDIENCE", "jwt-audience", "", "required token aud (local mode: " + auth.LocalAudience + ")", &c.Audience},
		{"CPIS_MAX_TOKEN_LIFETIME", "max-token-lifetime", auth.DefaultMaxLifetime.String(), "longest token lifetime accepted (exp - iat, or exp ahead of now without iat), a Go duration such as 24h or 8h", &c.maxTokenLifetime},
		{"CPIS_RBAC_FILE", "rbac-file", "", "activity-code to permission table (JSON) replacing the built-in one", &c.RBACFile},
		{"CPIS_LOG_LEVEL", "log-level", "info", "log level: debug, info, warn or error", &c.LogLevel},
		{"CPIS_DEBUG_ADDR", "debug-addr", "", "if set, a loopback address (such as 127.0.0.1:6060) serving Go's pprof profiles", &c.DebugAddr},
	}
}

// configError is a configuration problem: one clear line naming the setting.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func badConfig(format string, args ...any) error { return &configError{fmt.Sprintf(format, args...)} }

// loadConfig reads the environment, then flags, and checks the result.
func loadConfig(name string, args []string, getenv func(string) string, out io.Writer) (*config, *flag.FlagSet, error) {
	c := &config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	for _, s := range c.settings() {
		v := getenv(s.env)
		if v == "" {
			v = s.def
		}
		fs.StringVar(s.dst, s.flag, v, s.usage+" ("+s.env+")")
	}
	retention := getenv("CPIS_RETENTION_DAYS")
	if retention == "" {
		retention = "365"
	}
	fs.StringVar(&retention, "retention-days", retention, "days after a plan's end date before it and its access history are purged (CPIS_RETENTION_DAYS)")
	if err := fs.Parse(args); err != nil {
		return nil, fs, badConfig("%s: %v", name, err)
	}
	n, err := strconv.Atoi(retention)
	if err != nil || n < 1 || n > 36500 {
		return nil, fs, badConfig("CPIS_RETENTION_DAYS must be a whole number of days from 1 to 36500, not %q", retention)
	}
	c.RetentionDays = n
	return c, fs, c.check()
}

// localMode reports whether no JWKS is configured.
func (c *config) localMode() bool { return c.JWKSFile == "" && c.JWKSURL == "" }

func (c *config) check() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return badConfig("CPIS_ADDR must be host:port (such as :8080), not %q", c.Addr)
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return badConfig("CPIS_BASE_URL must be an absolute http(s) URL such as http://localhost:8080/FHIR/R4, not %q", c.BaseURL)
	}
	c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
	if c.DataDir == "" {
		return badConfig("CPIS_DATA_DIR must not be empty")
	}
	if c.MongoURI != "" && !strings.HasPrefix(c.MongoURI, "mongodb://") && !strings.HasPrefix(c.MongoURI, "mongodb+srv://") {
		return badConfig("CPIS_MONGODB_URI must start with mongodb:// or mongodb+srv://")
	}
	if c.MongoURI != "" && c.MongoDatabase == "" {
		return badConfig("CPIS_MONGODB_DATABASE must not be empty")
	}
	if c.JWKSFile != "" && c.JWKSURL != "" {
		return badConfig("set CPIS_JWKS_FILE or CPIS_JWKS_URL, not both")
	}
	if c.JWKSURL != "" {
		ju, err := url.Parse(c.JWKSURL)
		if err != nil || (ju.Scheme != "https" && ju.Scheme != "http") || ju.Host == "" {
			return badConfig("CPIS_JWKS_URL must be an absolute https URL")
		}
	}
	if c.localMode() {
		if c.Issuer == "" {
			c.Issuer = auth.LocalIssuer
		}
		if c.Audience == "" {
			c.Audience = auth.LocalAudience
		}
	} else {
		if c.Issuer == "" {
			return badConfig("CPIS_JWT_ISSUER is required when a JWKS is configured")
		}
		if c.Audience == "" {
			return badConfig("CPIS_JWT_AUDIENCE is required when a JWKS is configured")
		}
	}
	if c.DebugAddr != "" {
		host, _, err := net.SplitHostPort(c.DebugAddr)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return badConfig("CPIS_DEBUG_ADDR must be a loopback host:port such as 127.0.0.1:6060: profiles are not for the network")
		}
	}
	d, err := time.ParseDuration(c.maxTokenLifetime)
	if err != nil || d < time.Minute || d > 30*24*time.Hour {
		return badConfig("CPIS_MAX_TOKEN_LIFETIME must be a Go duration from 1m to 720h (such as 24h or 8h), not %q", c.maxTokenLifetime)
	}
	c.MaxTokenLifetime = d
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return badConfig("CPIS_LOG_LEVEL must be debug, info, warn or error, not %q", c.LogLevel)
	}
	return nil
}
