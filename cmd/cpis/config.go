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
	"cpis/handlers"
	"cpis/profiles/quality"
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
	// Quality is the data-quality report's thresholds (CPIS_DQ_*).
	Quality quality.Thresholds
	// QualityRefresh is how often the data-quality gauges are refreshed
	// (CPIS_DQ_REFRESH); 0 turns the refresh off.
	QualityRefresh time.Duration
	qualityRefresh string
	// QualityMaxPerRule is how many findings of each rule the
	// $data-quality report lists (CPIS_DQ_MAX_PER_RULE).
	QualityMaxPerRule int
	qualityMaxPerRule string
	// MaxTokenLifetime bounds a token's exp - iat (CPIS_MAX_TOKEN_LIFETIME).
	MaxTokenLifetime time.Duration
	maxTokenLifetime string
	// ExportExpiry is how long a bulk export's files are kept
	// (CPIS_EXPORT_EXPIRY).
	ExportExpiry time.Duration
	exportExpiry string
	LogLevel     string
	DebugAddr    string
	CORSOrigins  []string
	corsOrigins  string // as configured: comma-separated

	// The HTTP server's timeouts (see timeouts).
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	RequestTimeout    time.Duration

	// Notifications to local authorities (CPIS_NOTIFY_*).
	NotifyPoll           time.Duration
	NotifyAttemptTimeout time.Duration
	NotifyRetryMax       time.Duration
	NotifyErrorAfter     time.Duration
	NotifyLease          time.Duration
	NotifyErrorAttempts  int
	// NotifyMaxPerLA caps one authority's subscriptions (CPIS_NOTIFY_MAX_PER_LA).
	NotifyMaxPerLA int
	// NotifyInternalHosts may resolve to private addresses (CPIS_NOTIFY_INTERNAL_HOSTS).
	NotifyInternalHosts []string
	notifyInternalHosts string
	notifyErrorAttempts string
	notifyMaxPerLA      string
}

// notifyDurations are the delivery's settings of notifications to local
// authorities (handlers/notify).
func (c *config) notifyDurations() []duration {
	return []duration{
		{"CPIS_NOTIFY_POLL", "notify-poll", "1s", "how often subscriptions' outboxes are looked at without a wake-up from an audited read", &c.NotifyPoll},
		{"CPIS_NOTIFY_ATTEMPT_TIMEOUT", "notify-attempt-timeout", "10s", "time one notification POST may take", &c.NotifyAttemptTimeout},
		{"CPIS_NOTIFY_RETRY_MAX", "notify-retry-max", "5m", "longest wait between failed attempts (the backoff doubles from 1s, with jitter)", &c.NotifyRetryMax},
		{"CPIS_NOTIFY_ERROR_AFTER", "notify-error-after", "10m", "a subscription whose endpoint keeps failing turns to error after CPIS_NOTIFY_ERROR_ATTEMPTS failures over at least this time", &c.NotifyErrorAfter},
		{"CPIS_NOTIFY_LEASE", "notify-lease", "30s", "how long a server process holds a subscription's delivery without renewing it; another takes over after it", &c.NotifyLease},
	}
}

// duration is one configuration item that is a duration.
type duration struct {
	env, flag, def, usage string
	dst                   *time.Duration
}

// timeouts are the HTTP server's timeouts. The write timeout runs from the
// end of the request's headers to the end of the answer, so it covers
// reading a Bundle's body and applying it too: a 32 MiB Bundle must arrive
// and be applied within it. The request timeout answers 503 before then.
func (c *config) timeouts() []duration {
	return []duration{
		{"CPIS_READ_HEADER_TIMEOUT", "read-header-timeout", "10s", "time allowed to read a request's headers", &c.ReadHeaderTimeout},
		{"CPIS_READ_TIMEOUT", "read-timeout", "2m", "time allowed to read a whole request, body included", &c.ReadTimeout},
		{"CPIS_WRITE_TIMEOUT", "write-timeout", "2m", "time from the end of a request's headers to the end of its answer; the connection is closed after it", &c.WriteTimeout},
		{"CPIS_IDLE_TIMEOUT", "idle-timeout", "2m", "time a kept-alive connection may wait for its next request", &c.IdleTimeout},
		{"CPIS_REQUEST_TIMEOUT", "request-timeout", "90s", "time a request may take before it is answered 503; less than the write timeout", &c.RequestTimeout},
	}
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
		{"CPIS_CORS_ORIGINS", "cors-origins", "", "comma-separated browser origins (https://app.example) allowed to call the API; empty turns CORS off", &c.corsOrigins},
		{"CPIS_NOTIFY_INTERNAL_HOSTS", "notify-internal-hosts", "", "comma-separated subscription endpoint hosts (a name, or .suffix for every name under it) that may resolve to private or link-local addresses; no other endpoint may", &c.notifyInternalHosts},
		{"CPIS_NOTIFY_ERROR_ATTEMPTS", "notify-error-attempts", "10", "failed attempts in a row (over CPIS_NOTIFY_ERROR_AFTER) that turn a subscription to error", &c.notifyErrorAttempts},
		{"CPIS_NOTIFY_MAX_PER_LA", "notify-max-per-la", "10", "most subscriptions one local authority may hold, a whole number from 1 to 1000; a create beyond it is refused (422)", &c.notifyMaxPerLA},
		{"CPIS_EXPORT_EXPIRY", "export-expiry", "1h", "how long a bulk export ($export) and its files are kept after its kick-off, a Go duration from 1m to 168h", &c.exportExpiry},
		{"CPIS_DQ_REFRESH", "dq-refresh", "15m", "how often the data-quality metrics (cpis_data_quality_findings) are computed for every local authority, a Go duration from 1m to 24h; 0 turns it off", &c.qualityRefresh},
		{"CPIS_DQ_MAX_PER_RULE", "dq-max-per-rule", "100", "how many findings of each rule the $data-quality report lists (every count is exact; ?rule= lists a rule in full, in pages), a whole number from 1 to 1000", &c.qualityMaxPerRule},
	}
}

// configError is a configuration problem: one clear line naming the setting.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func badConfig(format string, args ...any) error { return &configError{fmt.Sprintf(format, args...)} }

// loadConfig reads the environment, then flags, and checks the result.
func loadConfig(name string, args []string, getenv func(string) string, out io.Writer) (*config, *flag.FlagSet, error) {
	return loadConfigWith(name, args, getenv, out, nil)
}

// loadConfigWith is loadConfig for a command with flags of its own besides
// the shared ones: command adds them to the flag set before parsing.
func loadConfigWith(name string, args []string, getenv func(string) string, out io.Writer, command func(*flag.FlagSet)) (*config, *flag.FlagSet, error) {
	c := &config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	if command != nil {
		command(fs)
	}
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
	durations := map[string]*string{}
	for _, d := range append(c.timeouts(), c.notifyDurations()...) {
		v := getenv(d.env)
		if v == "" {
			v = d.def
		}
		durations[d.env] = &v
		fs.StringVar(&v, d.flag, v, d.usage+" ("+d.env+")")
	}
	if err := fs.Parse(args); err != nil {
		return nil, fs, badConfig("%s: %v", name, err)
	}
	for _, d := range append(c.timeouts(), c.notifyDurations()...) {
		v := *durations[d.env]
		t, err := time.ParseDuration(v)
		if err != nil || t <= 0 || t > 24*time.Hour {
			return nil, fs, badConfig("%s must be a duration such as 30s or 2m, more than 0 and at most 24h, not %q", d.env, v)
		}
		*d.dst = t
	}
	n, err := strconv.Atoi(retention)
	if err != nil || n < 1 || n > 36500 {
		return nil, fs, badConfig("CPIS_RETENTION_DAYS must be a whole number of days from 1 to 36500, not %q", retention)
	}
	c.RetentionDays = n
	if c.Quality, err = quality.ThresholdsFromEnv(getenv); err != nil {
		return nil, fs, badConfig("%v", err)
	}
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
	if c.RequestTimeout >= c.WriteTimeout {
		return badConfig("CPIS_REQUEST_TIMEOUT (%s) must be less than CPIS_WRITE_TIMEOUT (%s), so a request that runs out of time is answered before the connection is closed", c.RequestTimeout, c.WriteTimeout)
	}
	if _, err := handlers.BasePath(c.BaseURL); err != nil {
		return badConfig("CPIS_BASE_URL: %v", err)
	}
	c.NotifyInternalHosts = nil
	for _, h := range strings.Split(c.notifyInternalHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			c.NotifyInternalHosts = append(c.NotifyInternalHosts, h)
		}
	}
	c.CORSOrigins = nil
	for _, o := range strings.Split(c.corsOrigins, ",") {
		if strings.TrimSpace(o) == "" {
			continue
		}
		n, err := handlers.CORSOrigin(o)
		if err != nil {
			return badConfig("CPIS_CORS_ORIGINS: %v", err)
		}
		c.CORSOrigins = append(c.CORSOrigins, n)
	}
	d, err := time.ParseDuration(c.maxTokenLifetime)
	if err != nil || d < time.Minute || d > 30*24*time.Hour {
		return badConfig("CPIS_MAX_TOKEN_LIFETIME must be a Go duration from 1m to 720h (such as 24h or 8h), not %q", c.maxTokenLifetime)
	}
	c.MaxTokenLifetime = d
	if c.NotifyErrorAttempts, err = strconv.Atoi(c.notifyErrorAttempts); err != nil || c.NotifyErrorAttempts < 1 || c.NotifyErrorAttempts > 1000 {
		return badConfig("CPIS_NOTIFY_ERROR_ATTEMPTS must be a whole number from 1 to 1000, not %q", c.notifyErrorAttempts)
	}
	if c.NotifyMaxPerLA, err = strconv.Atoi(c.notifyMaxPerLA); err != nil || c.NotifyMaxPerLA < 1 || c.NotifyMaxPerLA > 1000 {
		return badConfig("CPIS_NOTIFY_MAX_PER_LA must be a whole number from 1 to 1000, not %q", c.notifyMaxPerLA)
	}
	if c.NotifyAttemptTimeout >= c.NotifyLease {
		return badConfig("CPIS_NOTIFY_ATTEMPT_TIMEOUT (%s) must be less than CPIS_NOTIFY_LEASE (%s): a process must not lose a subscription's lease while it waits on its endpoint", c.NotifyAttemptTimeout, c.NotifyLease)
	}
	e, err := time.ParseDuration(c.exportExpiry)
	if err != nil || e < time.Minute || e > 7*24*time.Hour {
		return badConfig("CPIS_EXPORT_EXPIRY must be a Go duration from 1m to 168h (such as 1h), not %q", c.exportExpiry)
	}
	c.ExportExpiry = e
	if c.qualityRefresh == "0" {
		c.QualityRefresh = 0
	} else if d, err := time.ParseDuration(c.qualityRefresh); err != nil || d < time.Minute || d > 24*time.Hour {
		return badConfig("CPIS_DQ_REFRESH must be a Go duration from 1m to 24h (such as 15m), or 0 to turn it off, not %q", c.qualityRefresh)
	} else {
		c.QualityRefresh = d
	}
	if n, err := strconv.Atoi(c.qualityMaxPerRule); err != nil || n < 1 || n > 1000 {
		return badConfig("CPIS_DQ_MAX_PER_RULE must be a whole number from 1 to 1000, not %q", c.qualityMaxPerRule)
	} else {
		c.QualityMaxPerRule = n
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return badConfig("CPIS_LOG_LEVEL must be debug, info, warn or error, not %q", c.LogLevel)
	}
	return nil
}
