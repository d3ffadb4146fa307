// Command cpis is the CP-IS FHIR server: `cpis serve` (the default) runs it,
// `cpis token` mints a local-mode token, `cpis seed` loads synthetic data.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // plan dates are read in Europe/London, also in minimal images
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cpis:", err)
		var ce *configError
		if errors.As(err, &ce) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// run is the whole program: it returns when ctx is done or on error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, getenv, stdout)
	case "token":
		return token(args, getenv, stdout)
	case "seed":
		return seed(ctx, args, getenv, stdout)
	case "bench":
		return bench(ctx, args, getenv, stdout)
	case "store":
		return storeCommand(ctx, args, getenv, stdout)
	case "export":
		return exportCommand(ctx, args, getenv, stdout)
	case "import":
		return importCommand(ctx, args, getenv, stdout)
	case "migrate":
		return migrateCommand(ctx, args, getenv, stdout)
	case "version":
		_, err := fmt.Fprintln(stdout, version)
		return err
	case "help", "-h", "--help":
		_, err := fmt.Fprint(stdout, usage)
		return err
	}
	return badConfig("unknown command %q; the commands are serve, token, seed, bench, store, export, import, migrate and version", cmd)
}

const usage = `cpis: the CP-IS FHIR R4 server

  cpis [serve] [flags]        run the server (the default command)
  cpis token --kind user|system [flags]
                              mint a token signed with the local key (local mode only)
  cpis seed --children N [--la-count K] [--audit-events M]
                              load N synthetic children with plans and local authorities,
                              and M access records about them over the past year
  cpis bench [--children N] [--audit-events M] [--concurrency C] [--duration D]
                              seed a store, start a server on it and measure its hot paths
                              against a bare gin route (with wrk if it is installed)
  cpis store init [--force]   create the store; with --force, accept the database
                              found (missing, empty or another store's) as this
                              server's store after the server refused to start on it
  cpis export --out DIR       write the whole store (every version, deletion, derived
                              record and access record, in feed order) to NDJSON files
                              with a manifest of counts and SHA-256 checksums
  cpis import --in DIR [--force]
                              verify a dump and load it into the configured store, which
                              must be empty unless --force; then verify the store
  cpis migrate --from sqlite:DIR|mongodb://… --to sqlite:DIR|mongodb://… [--force]
                              stream one store into another (same checks as import)
  cpis version                print the version

Configuration is by environment variable (CPIS_*), each with a matching flag
that every command takes; run "cpis serve -h" for the list, and "cpis token -h",
"cpis seed -h" or "cpis bench -h" for a command's own flags as well.
`
