package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/extauthz/extauthz/policy"
)

// errInvalid marks a failed check whose problems were already printed.
var errInvalid = errors.New("policy is invalid")

// runPolicy implements "extauthz policy check FILE".
func runPolicy(args []string, stdout, stderr io.Writer) error {
	if len(args) != 2 || args[0] != "check" {
		fmt.Fprintln(stderr, "Usage: extauthz policy check FILE")
		return errUsage
	}
	p, err := policy.Load(args[1])
	if err != nil {
		var ve *policy.ValidationError
		if errors.As(err, &ve) {
			fmt.Fprintf(stderr, "%s: %d problem(s):\n", args[1], len(ve.Problems))
			for _, pr := range ve.Problems {
				fmt.Fprintf(stderr, "  - %s\n", pr)
			}
			return fmt.Errorf("%s: %w", args[1], errInvalid)
		}
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%d formats, %d scopes, %d routes, unmatched: %s)\n", args[1], len(p.Keys.Formats), len(p.Scopes), len(p.Routes), p.Unmatched)
	if l := p.DefaultRateLimit(); l != nil {
		fmt.Fprintf(stdout, "  rate limit of keys without their own: %s (per sidecar)\n", l)
	}
	for _, iso := range p.Isolations() {
		fmt.Fprintf(stdout, "  project-isolated: %s (every route matching there admits only keys of the project it names)\n", iso)
	}
	return nil
}
