package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		// Usage was printed for flag.ErrHelp (exit 0) and errUsage (exit 2).
		if !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "extauthz:", err)
		}
		os.Exit(exitCode(err))
	}
}

// run dispatches a command line; it is main without the process globals.
// A command's --help prints its usage and returns flag.ErrHelp.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "standalone", "admin", "sidecar":
		return runServe(ctx, role(cmd), rest, getenv, stderr)
	case "keys":
		return runKeys(ctx, rest, getenv, stdout, stderr)
	case "users":
		return runUsers(ctx, rest, getenv, stdout, stderr)
	case "policy":
		return runPolicy(rest, stdout, stderr)
	case "backup":
		return runBackup(ctx, rest, getenv, stdout, stderr)
	case "restore":
		return runRestore(rest, getenv, os.Stdin, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "extauthz %s (commit %s, %s)\n", version, commit, goVersion())
		return nil
	case "help", "-h", "--help", "-help":
		usage(stdout)
		return nil
	}
	fmt.Fprintf(stderr, "extauthz: unknown command %q\n\n", cmd)
	usage(stderr)
	return errUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: extauthz <command> [flags]

Commands:
  standalone       admin API + enforcement (gRPC Check, forwardAuth) over one store
  admin            the admin API and the replication feed
  sidecar          enforcement over a local replica that follows --admin-url
  keys             create|list|get|revoke|rotate|import keys through the admin API
  users            disable|enable ID through the admin API
  policy check F   validate a policy file; exit 1 listing every problem
  backup           write a consistent online backup of the admin's store (--out FILE)
  restore          put a backup in place of a stopped admin's store, as a new history
  version          print version, commit and Go version

Every flag also reads EXTAUTHZ_<FLAG_IN_UPPER_SNAKE>; a flag wins over its
variable. Run "extauthz <command> --help" for the flags of a command.
`)
}
