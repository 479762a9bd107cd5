package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/extauthz/extauthz/admin"
	"github.com/extauthz/extauthz/clip"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/tlsfiles"
)

// The "keys" and "users" commands are clients of the admin API
// (docs/admin-api.md), authenticated with the operator token.

// defaultAdminURL is where the CLI finds the admin API by default.
const defaultAdminURL = "http://127.0.0.1:8181"

// cliRequestTimeout bounds every CLI request except the streamed import.
const cliRequestTimeout = 30 * time.Second

const keysUsage = `Usage: extauthz keys <command> [flags] [args]

Commands:
  create --name NAME --scopes a,b [--expires-at RFC3339] [--user-id ID] [--project-id ID] [--rate-limit 100/1m] [--usage-limit N]
  list [--user-id ID] [--project-id ID]   live (not revoked) keys
  get ID
  update ID [--rate-limit 100/1m|none] [--usage-limit N|none]
                                           change or remove the key's rate limit or quota
  revoke ID
  rotate ID [--grace-period 24h]           new key; the old one expires after the grace period
  import FILE|-                            NDJSON of existing key hashes (- reads stdin)

Common flags (each also read from EXTAUTHZ_<FLAG_IN_UPPER_SNAKE>; a flag wins):
  --admin-url URL[,URL]    admin API base URL, or the members of an admin cluster: the first that answers (default ` + defaultAdminURL + `)
  --admin-ca-file FILE     PEM CAs of the admin's certificate (default: the system roots)
  --admin-token TOKEN      operator token (EXTAUTHZ_ADMIN_TOKEN); prefer the file
  --admin-token-file FILE  file holding the operator token
  -o, --output table|json  output format (default table)

Run "extauthz keys <command> --help" for the flags of a command.
`

const usersUsage = `Usage: extauthz users disable|enable ID [flags]

Deactivates or reactivates a user: a deactivated user's keys stop working
everywhere within the replication bound, and their access tokens are refused.
Flags are those of "extauthz keys"; run "extauthz users disable --help".
`

// runKeys runs "extauthz keys <command> ..."; args start after "keys".
func runKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runKeysIO(ctx, args, getenv, os.Stdin, stdout, stderr)
}

// runUsers runs "extauthz users disable|enable ID"; args start after "users".
func runUsers(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if done, err := commandHelp(args, usersUsage, stdout, stderr); done {
		return err
	}
	sub := args[0]
	var active bool
	switch sub {
	case "disable":
	case "enable":
		active = true
	default:
		fmt.Fprintf(stderr, "extauthz users: unknown command %q\n\n%s", sub, usersUsage)
		return errUsage
	}
	cli, pos, err := parseCLI("users "+sub, "ID", args[1:], getenv, stderr, nil)
	if err != nil {
		return err
	}
	id, err := oneArg("users "+sub, pos, "ID", stderr)
	if err != nil {
		return err
	}
	var out admin.UserResponse
	raw, err := cli.call(ctx, http.MethodPut, "/api/v1/users/"+url.PathEscape(id), nil, jsonBody(map[string]bool{"active": active}), &out)
	if err != nil {
		return err
	}
	if cli.json {
		return writeIndented(stdout, raw)
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "USER\tACTIVE")
	fmt.Fprintf(tw, "%s\t%v\n", out.ID, out.Active)
	return tw.Flush()
}

// commandHelp answers a command group called without a subcommand (its
// usage on stderr, errUsage) or with -h/--help (its usage on stdout);
// done is false when args name a subcommand.
func commandHelp(args []string, usage string, stdout, stderr io.Writer) (done bool, err error) {
	switch {
	case len(args) == 0:
		fmt.Fprint(stderr, usage)
		return true, errUsage
	case isHelp(args[0]):
		fmt.Fprint(stdout, usage)
		return true, nil
	}
	return false, nil
}

// runKeysIO is runKeys with stdin as a parameter, for tests.
func runKeysIO(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if done, err := commandHelp(args, keysUsage, stdout, stderr); done {
		return err
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "create":
		return keysCreate(ctx, rest, getenv, stdout, stderr)
	case "list":
		return keysList(ctx, rest, getenv, stdout, stderr)
	case "get":
		return keysGet(ctx, rest, getenv, stdout, stderr)
	case "revoke":
		return keysRevoke(ctx, rest, getenv, stdout, stderr)
	case "update":
		return keysUpdate(ctx, rest, getenv, stdout, stderr)
	case "rotate":
		return keysRotate(ctx, rest, getenv, stdout, stderr)
	case "import":
		return keysImport(ctx, rest, getenv, stdin, stdout, stderr)
	}
	fmt.Fprintf(stderr, "extauthz keys: unknown command %q\n\n%s", sub, keysUsage)
	return errUsage
}

func isHelp(s string) bool {
	switch s {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// rateLimit shows l as the CLI takes it, "100/1m", or "-".
func rateLimit(l *admin.RateLimitView) string {
	if l == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%s", l.Limit, l.Duration)
}

// usageLimit shows q as "412 of 1000 left", or "-".
func usageLimit(q *admin.UsageLimitView) string {
	if q == nil {
		return "-"
	}
	return fmt.Sprintf("%d of %d left", q.Remaining, q.Limit)
}

// usageLimitBody parses a --usage-limit value, a number of requests, into
// the API's usageLimit; "none" is null (no quota).
func usageLimitBody(s string) (any, error) {
	if s == "none" {
		return nil, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("must be a whole number of requests, got %q", clip.String(s, 32))
	}
	if err := keystore.CheckUsageLimit(n); err != nil {
		return nil, err
	}
	return n, nil
}

// asRecord is a created or rotated key shown like a record.
func asRecord(c admin.NexgentCreated) admin.NexgentKey {
	return admin.NexgentKey{ID: c.ID, Name: c.Name, Prefix: c.Prefix, Scopes: c.Scopes, CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt, RateLimit: c.RateLimit, UsageLimit: c.UsageLimit}
}

// rateLimitBody parses a --rate-limit value ("100/1m") into the API's
// {"limit", "duration"}; "none" is null (no limit).
func rateLimitBody(s string) (any, error) {
	if s == "none" {
		return nil, nil
	}
	l, err := keystore.ParseRateLimit(s)
	if err != nil {
		return nil, err
	}
	return map[string]any{"limit": l.Limit, "duration": keystore.FormatDuration(l.Duration)}, nil
}

func keysCreate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var name, scopes, expiresAt, userID, projectID, rateLimit, quota string
	cli, pos, err := parseCLI("keys create", "", args, getenv, stderr, func(f *flag.FlagSet) {
		f.StringVar(&rateLimit, "rate-limit", "", "at most N requests per duration, e.g. 100/1m (default: the policy's)")
		f.StringVar(&quota, "usage-limit", "", "at most N requests in total, a quota (default: none)")
		f.StringVar(&name, "name", "", "name of the key (required)")
		f.StringVar(&scopes, "scopes", "", "comma-separated scopes (required)")
		f.StringVar(&expiresAt, "expires-at", "", "expiry as RFC 3339, e.g. 2026-06-01T00:00:00Z (default: never)")
		f.StringVar(&userID, "user-id", "", "owner user id (default: no owner)")
		f.StringVar(&projectID, "project-id", "", "project id (default: none)")
	})
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "extauthz keys create: unexpected arguments %q\n", pos)
		return errUsage
	}
	body := map[string]any{"name": name, "scopes": splitList(scopes)}
	if expiresAt != "" {
		body["expiresAt"] = expiresAt
	}
	if userID != "" {
		body["userId"] = userID
	}
	if projectID != "" {
		body["projectId"] = projectID
	}
	if rateLimit != "" {
		rl, err := rateLimitBody(rateLimit)
		if err != nil || rl == nil {
			fmt.Fprintf(stderr, "extauthz keys create: --rate-limit: %v\n", cmpOr(err, "must be <limit>/<duration> such as 100/1m"))
			return errUsage
		}
		body["rateLimit"] = rl
	}
	if quota != "" {
		q, err := usageLimitBody(quota)
		if err != nil || q == nil {
			fmt.Fprintf(stderr, "extauthz keys create: --usage-limit: %v\n", cmpOr(err, "must be a whole number of requests"))
			return errUsage
		}
		body["usageLimit"] = q
	}
	var k admin.NexgentCreated
	raw, err := cli.call(ctx, http.MethodPost, "/api/v1/api-keys", nil, jsonBody(body), &k)
	if err != nil {
		return err
	}
	return printNewKey(cli, stdout, stderr, raw, k)
}

// printNewKey shows a created or rotated key, the only time its raw value
// is available.
func printNewKey(cli *adminClient, stdout, stderr io.Writer, raw []byte, k admin.NexgentCreated) error {
	fmt.Fprintln(stderr, "The key below is shown only once: store it now, it cannot be retrieved later.")
	if cli.json {
		return writeIndented(stdout, raw)
	}
	return printRecord(stdout, asRecord(k), k.Key)
}

// printRecord shows a key record; with the raw key (just created) instead
// of its last use.
func printRecord(w io.Writer, k admin.NexgentKey, key string) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "ID\t%s\n", k.ID)
	fmt.Fprintf(tw, "NAME\t%s\n", k.Name)
	fmt.Fprintf(tw, "PREFIX\t%s\n", k.Prefix)
	fmt.Fprintf(tw, "SCOPES\t%s\n", strings.Join(k.Scopes, ","))
	fmt.Fprintf(tw, "CREATED\t%s\n", k.CreatedAt)
	fmt.Fprintf(tw, "EXPIRES\t%s\n", orDash(k.ExpiresAt))
	fmt.Fprintf(tw, "RATE LIMIT\t%s\n", rateLimit(k.RateLimit))
	fmt.Fprintf(tw, "USAGE LIMIT\t%s\n", usageLimit(k.UsageLimit))
	if key == "" {
		fmt.Fprintf(tw, "LAST USED\t%s\n", orDash(k.LastUsedAt))
	} else {
		fmt.Fprintf(tw, "KEY\t%s\n", key)
	}
	return tw.Flush()
}

func keysList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var userID, projectID string
	cli, pos, err := parseCLI("keys list", "", args, getenv, stderr, func(f *flag.FlagSet) {
		f.StringVar(&userID, "user-id", "", "only keys of this user")
		f.StringVar(&projectID, "project-id", "", "only keys of this project")
	})
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "extauthz keys list: unexpected arguments %q\n", pos)
		return errUsage
	}
	q := url.Values{}
	if userID != "" {
		q.Set("userId", userID)
	}
	if projectID != "" {
		q.Set("projectId", projectID)
	}
	var keys []admin.NexgentKey
	raw, err := cli.call(ctx, http.MethodGet, "/api/v1/api-keys", q, nil, &keys)
	if err != nil {
		return err
	}
	if cli.json {
		return writeIndented(stdout, raw)
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tSCOPES\tCREATED\tLAST USED\tEXPIRES\tRATE LIMIT\tUSAGE LIMIT")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, oneLine(k.Name), k.Prefix, strings.Join(k.Scopes, ","), k.CreatedAt, orDash(k.LastUsedAt), orDash(k.ExpiresAt), rateLimit(k.RateLimit), usageLimit(k.UsageLimit))
	}
	return tw.Flush()
}

func keysGet(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cli, pos, err := parseCLI("keys get", "ID", args, getenv, stderr, nil)
	if err != nil {
		return err
	}
	id, err := oneArg("keys get", pos, "ID", stderr)
	if err != nil {
		return err
	}
	var k admin.NexgentKey
	raw, err := cli.call(ctx, http.MethodGet, "/api/v1/api-keys/"+url.PathEscape(id), nil, nil, &k)
	if err != nil {
		return err
	}
	if cli.json {
		return writeIndented(stdout, raw)
	}
	return printRecord(stdout, k, "")
}

func keysRevoke(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cli, pos, err := parseCLI("keys revoke", "ID", args, getenv, stderr, nil)
	if err != nil {
		return err
	}
	id, err := oneArg("keys revoke", pos, "ID", stderr)
	if err != nil {
		return err
	}
	raw, err := cli.call(ctx, http.MethodDelete, "/api/v1/api-keys/"+url.PathEscape(id), nil, nil, nil)
	if err != nil {
		return err
	}
	if cli.json {
		return writeIndented(stdout, raw)
	}
	_, err = fmt.Fprintf(stdout, "revoked %s\n", id)
	return err
}

func keysUpdate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var rateLimit, quota string
	cli, pos, err := parseCLI("keys update", "ID", args, getenv, stderr, func(f *flag.FlagSet) {
		f.StringVar(&rateLimit, "rate-limit", "", `at most N requests per duration, e.g. 100/1m; "none" removes the limit`)
		f.StringVar(&quota, "usage-limit", "", `at most N requests in total from now, a quota; "none" removes it`)
	})
	if err != nil {
		return err
	}
	id, err := oneArg("keys update", pos, "ID", stderr)
	if err != nil {
		return err
	}
	if rateLimit == "" && quota == "" {
		fmt.Fprintln(stderr, "extauthz keys update: --rate-limit or --usage-limit is required")
		return errUsage
	}
	body := map[string]any{}
	if rateLimit != "" {
		rl, err := rateLimitBody(rateLimit)
		if err != nil {
			fmt.Fprintf(stderr, "extauthz keys update: --rate-limit: %v\n", err)
			return errUsage
		}
		body["rateLimit"] = rl
	}
	if quota != "" {
		q, err := usageLimitBody(quota)
		if err != nil {
			fmt.Fprintf(stderr, "extauthz keys update: --usage-limit: %v\n", err)
			return errUsage
		}
		body["usageLimit"] = q
	}
	var k admin.NexgentKey
	raw, err := cli.call(ctx, http.MethodPatch, "/api/v1/api-keys/"+url.PathEscape(id), nil, jsonBody(body), &k)
	if err != nil {
		return err
	}
	if cli.json {
		return writeIndented(stdout, raw)
	}
	return printRecord(stdout, k, "")
}

// cmpOr returns err's message, or msg when err is nil.
func cmpOr(err error, msg string) string {
	if err != nil {
		return err.Error()
	}
	return msg
}

func keysRotate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var grace string
	cli, pos, err := parseCLI("keys rotate", "ID", args, getenv, stderr, func(f *flag.FlagSet) {
		f.StringVar(&grace, "grace-period", "24h", `how long the old key keeps working, a Go duration ("0s" revokes it at once)`)
	})
	if err != nil {
		return err
	}
	id, err := oneArg("keys rotate", pos, "ID", stderr)
	if err != nil {
		return err
	}
	var k admin.NexgentCreated
	raw, err := cli.call(ctx, http.MethodPost, "/api/v1/api-keys/"+url.PathEscape(id)+"/rotate", nil, jsonBody(map[string]string{"gracePeriod": grace}), &k)
	if err != nil {
		return err
	}
	return printNewKey(cli, stdout, stderr, raw, k)
}

func keysImport(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cli, pos, err := parseCLI("keys import", "FILE|-", args, getenv, stderr, nil)
	if err != nil {
		return err
	}
	path, err := oneArg("keys import", pos, "FILE|-", stderr)
	if err != nil {
		return err
	}
	in := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	var res admin.ImportResponse
	raw, err := cli.call(ctx, http.MethodPost, "/api/v1/api-keys/import", nil, &requestBody{in, "application/x-ndjson", true}, &res)
	if err != nil {
		return err
	}
	if cli.json {
		err = writeIndented(stdout, raw)
	} else {
		tw := newTable(stdout)
		fmt.Fprintf(tw, "IMPORTED\t%d\nSKIPPED\t%d\nERRORS\t%d\n", res.Imported, res.Skipped, len(res.Errors)+res.ErrorsOmitted)
		if len(res.Errors) > 0 {
			fmt.Fprintln(tw, "\nLINE\tERROR")
			for _, e := range res.Errors {
				fmt.Fprintf(tw, "%d\t%s\n", e.Line, oneLine(e.Error))
			}
			if res.ErrorsOmitted > 0 {
				fmt.Fprintf(tw, "...\t%d more errors not listed\n", res.ErrorsOmitted)
			}
		}
		err = tw.Flush()
	}
	if err != nil {
		return err
	}
	if n := len(res.Errors) + res.ErrorsOmitted; n > 0 {
		return fmt.Errorf("%d lines were not imported", n)
	}
	return nil
}

// adminClient calls the admin API with the operator token.
type adminClient struct {
	bases []string // --admin-url: a list of admin members, the first that answers is used
	token string
	json  bool
	http  *http.Client
}

// send sends the request newReq builds for a base URL to the first member
// of the list that can be connected to. A member that refuses the
// connection was sent nothing, so the next one gets the same request; any
// other failure (TLS included) is the answer. A body that cannot be
// built again (retry false) goes to the first member only.
func (c *adminClient) send(newReq func(base string) (*http.Request, error), retry bool) (*http.Response, error) {
	var errs []error
	for i, base := range c.bases {
		req, err := newReq(base)
		if err != nil {
			return nil, err
		}
		resp, err := c.http.Do(req)
		var op *net.OpError
		if err == nil || !retry || !errors.As(err, &op) || op.Op != "dial" {
			if err == nil && i > 0 {
				c.bases = append([]string{base}, slices.Delete(slices.Clone(c.bases), i, i+1)...) // the next call starts there
			}
			return resp, err
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// requestBody is a request body and its content type. stream marks a body
// of unknown size whose request has no overall timeout.
type requestBody struct {
	r           io.Reader
	contentType string
	stream      bool
}

func jsonBody(v any) *requestBody {
	b, _ := json.Marshal(v)
	return &requestBody{bytes.NewReader(b), "application/json", false}
}

// call sends one request and decodes a 2xx JSON answer into out (when not
// nil), returning the raw body. Any other status is returned as an error
// carrying the server's message.
func (c *adminClient) call(ctx context.Context, method, path string, q url.Values, body *requestBody, out any) ([]byte, error) {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if body == nil || !body.stream {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cliRequestTimeout)
		defer cancel()
	}
	resp, err := c.send(func(base string) (*http.Request, error) {
		var rd io.Reader
		if body != nil {
			rd = body.r
			if s, ok := rd.(io.Seeker); ok && !body.stream { // the same body again, for the next member
				if _, err := s.Seek(0, io.SeekStart); err != nil {
					return nil, err
				}
			}
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+c.token)
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", body.contentType)
		}
		return req, nil
	}, body == nil || !body.stream)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API: reading response: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("admin API: %s", resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("admin API: unexpected response: %w", err)
		}
	}
	return raw, nil
}

// parseCLI defines the common flags plus those added by extra, parses args
// (flags may follow positional arguments), applies the environment and
// returns the client and the positional arguments. It returns
// flag.ErrHelp after --help printed the usage.
func parseCLI(name, argsUsage string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (*adminClient, []string, error) {
	f := newFlagSet(name, argsUsage, stderr)
	var adminURL, caFile, token, tokenFile, output string
	f.StringVar(&adminURL, "admin-url", defaultAdminURL, "admin API base URL, or a comma-separated list of an admin cluster's members (the first that answers)")
	f.StringVar(&caFile, "admin-ca-file", "", "PEM CAs that sign the admin's certificate, for an https:// --admin-url (empty: the system roots)")
	f.StringVar(&token, "admin-token", "", "operator token; prefer --admin-token-file")
	f.StringVar(&tokenFile, "admin-token-file", "", "file holding the operator token (surrounding whitespace trimmed)")
	f.StringVar(&output, "output", "table", "output format: table or json")
	f.StringVar(&output, "o", "table", "shorthand for --output")
	if extra != nil {
		extra(f)
	}
	pos, err := parseInterspersed(f, args)
	if err != nil {
		return nil, nil, err
	}
	given := onCommandLine(f) // before applyEnv, which sets flags too
	if err := applyEnv(f, getenv); err != nil {
		return nil, nil, err
	}
	var problems []error
	if output != "table" && output != "json" {
		problems = append(problems, fmt.Errorf("--output %q: want table or json", output))
	}
	bases := splitList(adminURL)
	if len(bases) == 0 {
		problems = append(problems, fmt.Errorf("--admin-url %q: want an http:// or https:// URL", adminURL))
	}
	for i, b := range bases {
		u, err := url.Parse(b)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			problems = append(problems, fmt.Errorf("--admin-url %q: want an http:// or https:// URL (or a comma-separated list of them)", b))
		} else if err := checkAdminURLTLS(b, caFile, ""); err != nil {
			problems = append(problems, err)
		} else if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
			fmt.Fprintf(stderr, "warning: %s is plain HTTP to another host: the operator token crosses the network in clear; use https://\n", u.Redacted())
		}
		bases[i] = strings.TrimRight(b, "/")
	}
	var tr http.RoundTripper = http.DefaultTransport
	if caFile != "" {
		t, err := tlsfiles.NewTransport(http.DefaultTransport.(*http.Transport), tlsfiles.ClientOptions{CAFile: caFile})
		if err != nil {
			problems = append(problems, fmt.Errorf("--admin-ca-file: %w", err))
		}
		tr = t
	}
	// Precedence: --admin-token, --admin-token-file, then their variables
	// (which applyEnv put into token and tokenFile).
	switch {
	case token != "" && given["admin-token"]:
	case tokenFile != "" && given["admin-token-file"]:
		token, err = readSecretFile(tokenFile)
	case token != "":
		token = strings.TrimSpace(token)
	case tokenFile != "":
		token, err = readSecretFile(tokenFile)
	default:
		err = errors.New("no operator token: set --admin-token-file or EXTAUTHZ_ADMIN_TOKEN")
	}
	if err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return nil, nil, errors.Join(problems...)
	}
	return &adminClient{
		bases: bases,
		token: token,
		json:  output == "json",
		http:  &http.Client{Transport: tr},
	}, pos, nil
}

// parseInterspersed parses flags that may appear before and after
// positional arguments ("keys rotate ID --grace-period 1h"). Everything
// after "--" is positional. Errors are those of parseFlags.
func parseInterspersed(f *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			return nil, parseError(err)
		}
		rest := f.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// oneArg returns the single positional argument.
func oneArg(cmd string, pos []string, what string, stderr io.Writer) (string, error) {
	if len(pos) != 1 || pos[0] == "" {
		fmt.Fprintf(stderr, "extauthz %s: want exactly one %s argument, got %q\n", cmd, what, pos)
		return "", errUsage
	}
	return pos[0], nil
}

// splitList splits "a, b,,c" into [a b c]; an empty string gives [].
func splitList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

func writeIndented(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return fmt.Errorf("admin API: unexpected response: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func orDash(s *string) string {
	if s == nil || *s == "" {
		return "-"
	}
	return *s
}

// oneLine keeps a server-provided string from breaking the table layout.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}
