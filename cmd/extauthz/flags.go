package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// errUsage is returned after usage text was printed for a bad command line.
var errUsage = errors.New("usage")

// exitCode maps run's error to the process exit status.
func exitCode(err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

func goVersion() string { return runtime.Version() }

// envName is the environment variable of a flag: EXTAUTHZ_<UPPER_SNAKE>.
func envName(flagName string) string {
	return "EXTAUTHZ_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// flags wraps a FlagSet so every flag takes its default from its
// environment variable; a flag on the command line still wins. Bad
// environment values are collected and reported by parse.
type flags struct {
	*flag.FlagSet
	getenv func(string) string
	errs   []error
}

func newFlags(name string, getenv func(string) string, out io.Writer) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	f := &flags{FlagSet: fs, getenv: getenv}
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: extauthz %s [flags]\n\nFlags (each also read from EXTAUTHZ_<NAME>):\n", name)
		fs.PrintDefaults()
	}
	return f
}

func (f *flags) env(name string) (string, bool) {
	v := f.getenv(envName(name))
	return v, v != ""
}

func (f *flags) StringVar(p *string, name, def, usage string) {
	if v, ok := f.env(name); ok {
		def = v
	}
	f.FlagSet.StringVar(p, name, def, usage)
}

func (f *flags) BoolVar(p *bool, name string, def bool, usage string) {
	if v, ok := f.env(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s: %w", envName(name), err))
		} else {
			def = b
		}
	}
	f.FlagSet.BoolVar(p, name, def, usage)
}

func (f *flags) DurationVar(p *time.Duration, name string, def time.Duration, usage string) {
	if v, ok := f.env(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s: %w", envName(name), err))
		} else {
			def = d
		}
	}
	f.FlagSet.DurationVar(p, name, def, usage)
}

func (f *flags) IntVar(p *int, name string, def int, usage string) {
	if v, ok := f.env(name); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s: %w", envName(name), err))
		} else {
			def = n
		}
	}
	f.FlagSet.IntVar(p, name, def, usage)
}

// parse parses args. It returns flag.ErrHelp after --help printed the
// usage, errUsage for a bad command line, and bad environment values.
func (f *flags) parse(args []string) error {
	if err := f.FlagSet.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return errUsage
	}
	return errors.Join(f.errs...)
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
