package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/extauthz/extauthz/admin"
)

// errUsage is returned after usage text was printed for a bad command line.
var errUsage = errors.New("usage")

// exitCode maps run's error to the process exit status: 0 for none and for
// flag.ErrHelp (--help printed the usage), 2 for a bad command line.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	return 1
}

func goVersion() string { return runtime.Version() }

// envName is the environment variable of a flag: EXTAUTHZ_<UPPER_SNAKE>.
func envName(flagName string) string {
	return "EXTAUTHZ_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// shorthands maps a one-letter alias to its flag: -o is --output. An alias
// has no variable of its own, and giving it on the command line counts as
// giving its flag.
var shorthands = map[string]string{"o": "output"}

// newFlagSet returns the flag set of "extauthz <name>", whose usage (on
// --help or a bad flag) is printed to out. argsUsage names the positional
// arguments, if any.
func newFlagSet(name, argsUsage string, out io.Writer) *flag.FlagSet {
	f := flag.NewFlagSet(name, flag.ContinueOnError)
	f.SetOutput(out)
	f.Usage = func() {
		fmt.Fprintf(out, "Usage: extauthz %s [flags]", name)
		if argsUsage != "" {
			fmt.Fprintf(out, " %s", argsUsage)
		}
		fmt.Fprint(out, "\n\nFlags (each also read from its variable; a flag on the command line wins):\n")
		printFlags(out, f)
	}
	return f
}

// printFlags writes one line per flag, "  --name VALUE  usage (default D,
// env EXTAUTHZ_NAME)", in the spelling of the docs; an empty default, or a
// bool's false, is left out.
func printFlags(w io.Writer, f *flag.FlagSet) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	f.VisitAll(func(fl *flag.Flag) {
		if _, alias := shorthands[fl.Name]; alias {
			return
		}
		names := "--" + fl.Name
		for short, long := range shorthands {
			if long == fl.Name && f.Lookup(short) != nil {
				names = "-" + short + ", " + names
			}
		}
		value, usage := flag.UnquoteUsage(fl)
		if value != "" {
			names += " " + value
		}
		var notes []string
		var current any // only its type: the default is fl.DefValue
		if g, ok := fl.Value.(flag.Getter); ok {
			current = g.Get()
		}
		switch current.(type) {
		case string:
			if fl.DefValue != "" {
				notes = append(notes, fmt.Sprintf("default %q", fl.DefValue))
			}
		case bool:
			if fl.DefValue != "false" {
				notes = append(notes, "default "+fl.DefValue)
			}
		default:
			if fl.DefValue != "" {
				notes = append(notes, "default "+fl.DefValue)
			}
		}
		notes = append(notes, "env "+envName(fl.Name))
		fmt.Fprintf(tw, "  %s\t%s (%s)\n", names, usage, strings.Join(notes, ", "))
	})
	tw.Flush()
}

// parseFlags parses args, then applies the environment (applyEnv). It
// returns flag.ErrHelp after --help printed the usage, errUsage after a bad
// command line printed it, and the bad environment values.
func parseFlags(f *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := f.Parse(args); err != nil {
		return parseError(err)
	}
	return applyEnv(f, getenv)
}

// parseError maps an error of FlagSet.Parse, which already printed it and
// the usage: flag.ErrHelp stays, anything else is a bad command line.
func parseError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return flag.ErrHelp
	}
	return errUsage
}

// applyEnv sets every flag of f that was not on the command line from its
// variable, EXTAUTHZ_<NAME>, when that is set and not empty. Every bad value
// is reported, each naming its variable.
func applyEnv(f *flag.FlagSet, getenv func(string) string) error {
	given := onCommandLine(f)
	var errs []error
	f.VisitAll(func(fl *flag.Flag) {
		if _, alias := shorthands[fl.Name]; alias || given[fl.Name] {
			return
		}
		name := envName(fl.Name)
		v := getenv(name)
		if v == "" {
			return
		}
		if err := f.Set(fl.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("invalid value %q for %s: %w", v, name, err))
		}
	})
	return errors.Join(errs...)
}

// onCommandLine returns the names of the flags given on the command line,
// an alias counting as its flag. Call it before applyEnv: FlagSet.Visit
// also sees the flags that Set set.
func onCommandLine(f *flag.FlagSet) map[string]bool {
	given := map[string]bool{}
	f.Visit(func(fl *flag.Flag) {
		if long, alias := shorthands[fl.Name]; alias {
			given[long] = true
		}
		given[fl.Name] = true
	})
	return given
}

// readSecretFile reads a token or secret file, trimming surrounding
// whitespace. The error never contains the file's content.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}

// minSecretBytes is the shortest secret a serving process accepts from a
// file: 16 bytes (128 bits) of an "openssl rand -hex 32" token.
const minSecretBytes = 16

// readServerSecret is readSecretFile for the serving commands, which also
// refuse a file any user of the machine may read (checkPrivateFile) and a
// secret shorter than minSecretBytes.
func readServerSecret(path string) (string, error) {
	if err := checkPrivateFile(path); err != nil {
		return "", err
	}
	s, err := readSecretFile(path)
	if err != nil {
		return "", err
	}
	if len(s) < minSecretBytes {
		return "", fmt.Errorf("secret file %s holds %d bytes: at least %d are required (e.g. openssl rand -hex 32)", path, len(s), minSecretBytes)
	}
	return s, nil
}

// checkPrivateFile refuses a secret file that every user of the machine
// may read. Group read is allowed: Kubernetes mounts Secret files for the
// pod's fsGroup (defaultMode 0440).
func checkPrivateFile(path string) error {
	fi, err := os.Stat(path) // through the symlinks of a Secret volume
	if err != nil {
		return fmt.Errorf("read secret file: %w", err)
	}
	if mode := fi.Mode().Perm(); mode&0o004 != 0 {
		return fmt.Errorf("secret file %s is readable by every user (mode %04o): make it 0600, 0400 or 0440 (Kubernetes: defaultMode: 0440 on the Secret volume)", path, mode)
	}
	return nil
}

// rateFlag is a flag.Value of an admin rate limit, "N/DURATION" or "0".
type rateFlag struct{ r *admin.Rate }

func (f rateFlag) String() string {
	if f.r == nil {
		return ""
	}
	return f.r.String()
}

func (f rateFlag) Set(s string) error {
	r, err := admin.ParseRate(s)
	if err != nil {
		return err
	}
	*f.r = r
	return nil
}
