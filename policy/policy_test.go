package policy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// minimalPolicy is the smallest valid policy file.
const minimalPolicy = `
keys:
  formats: [{prefix: k_, charset: hex, length: 8}]
`

// policyWith returns minimalPolicy followed by extra top-level YAML.
func policyWith(extra string) string {
	return minimalPolicy + extra
}

// problemCases are invalid policy files and exactly the problems Parse must
// report for them, in order. They also seed FuzzParse.
var problemCases = []struct {
	name string
	yaml string
	want []string
}{
	{
		name: "empty file",
		yaml: "",
		want: []string{"keys.formats: at least one format is required"},
	},
	{
		name: "empty formats",
		yaml: "keys: {formats: []}",
		want: []string{"keys.formats: at least one format is required"},
	},
	{
		name: "empty prefix",
		yaml: `keys: {formats: [{prefix: "", charset: hex, length: 8}]}`,
		want: []string{"keys.formats[0].prefix: is required"},
	},
	{
		name: "prefix with space",
		yaml: `keys: {formats: [{prefix: "k ", charset: hex, length: 8}]}`,
		want: []string{"keys.formats[0].prefix: must be printable ASCII without spaces"},
	},
	{
		name: "duplicate prefix",
		yaml: `keys: {formats: [{prefix: k_, charset: hex, length: 8}, {prefix: k_, charset: alphanumeric, length: 9}]}`,
		want: []string{`keys.formats[1].prefix: "k_" duplicates keys.formats[0]`},
	},
	{
		name: "unknown charset",
		yaml: `keys: {formats: [{prefix: k_, charset: base64, length: 8}]}`,
		want: []string{"keys.formats[0].charset: must be alphanumeric or hex"},
	},
	{
		name: "missing charset and length",
		yaml: `keys: {formats: [{prefix: k_}]}`,
		want: []string{
			"keys.formats[0].charset: must be alphanumeric or hex",
			"keys.formats[0].length: must be between 1 and 512",
		},
	},
	{
		name: "length too long",
		yaml: `keys: {formats: [{prefix: k_, charset: hex, length: 513}]}`,
		want: []string{"keys.formats[0].length: must be between 1 and 512"},
	},
	{
		name: "negative length",
		yaml: `keys: {formats: [{prefix: k_, charset: hex, length: -1}]}`,
		want: []string{"keys.formats[0].length: must be between 1 and 512"},
	},
	{
		name: "unknown source",
		yaml: `keys: {formats: [{prefix: k_, charset: hex, length: 8}], sources: [bearer, cookie]}`,
		want: []string{`keys.sources[1]: unknown source "cookie" (must be x-api-key or bearer)`},
	},
	{
		name: "source is case-sensitive",
		yaml: `keys: {formats: [{prefix: k_, charset: hex, length: 8}], sources: [X-API-Key]}`,
		want: []string{`keys.sources[0]: unknown source "X-API-Key" (must be x-api-key or bearer)`},
	},
	{
		name: "duplicate source",
		yaml: `keys: {formats: [{prefix: k_, charset: hex, length: 8}], sources: [bearer, bearer]}`,
		want: []string{`keys.sources[1]: duplicate source "bearer"`},
	},
	{
		name: "duplicate scope",
		yaml: policyWith("scopes: [read, write, read]"),
		want: []string{`scopes[2]: duplicate scope "read"`},
	},
	{
		name: "empty scope",
		yaml: policyWith(`scopes: [read, ""]`),
		want: []string{"scopes[1]: must not be empty"},
	},
	{
		name: "scope with space",
		yaml: policyWith(`scopes: ["read all"]`),
		want: []string{`scopes[0]: "read all" must be valid UTF-8 without spaces or control characters`},
	},
	{
		name: "super scope not in scopes",
		yaml: policyWith("scopes: [read]\nsuperScope: admin"),
		want: []string{`superScope: scope "admin" is not in scopes`},
	},
	{
		name: "empty route path",
		yaml: policyWith("routes: [{public: true}]"),
		want: []string{"routes[0].path: is required"},
	},
	{
		name: "relative route path",
		yaml: policyWith("routes: [{path: api/v1, public: true}]"),
		want: []string{`routes[0].path: must start with "/"`},
	},
	{
		name: "double star not last",
		yaml: policyWith(`routes: [{path: "/a/**/b", public: true}]`),
		want: []string{`routes[0].path: "**" is only allowed as the last segment`},
	},
	{
		name: "trailing slash in pattern",
		yaml: policyWith(`routes: [{path: "/a/", public: true}]`),
		want: []string{`routes[0].path: must not contain empty segments (repeated or trailing "/")`},
	},
	{
		name: "repeated slash in pattern",
		yaml: policyWith(`routes: [{path: "/a//b", public: true}]`),
		want: []string{`routes[0].path: must not contain empty segments (repeated or trailing "/")`},
	},
	{
		name: "empty capture name",
		yaml: policyWith(`routes: [{path: "/a/{}", public: true}]`),
		want: []string{"routes[0].path: empty capture name"},
	},
	{
		name: "duplicate capture name",
		yaml: policyWith(`routes: [{path: "/a/{id}/b/{id}", public: true}]`),
		want: []string{`routes[0].path: duplicate capture name "id"`},
	},
	{
		name: "invalid capture name",
		yaml: policyWith(`routes: [{path: "/a/{i-d}", public: true}]`),
		want: []string{`routes[0].path: invalid capture name "i-d" (use letters, digits and "_")`},
	},
	{
		name: "partial wildcard",
		yaml: policyWith(`routes: [{path: "/a/b*", public: true}]`),
		want: []string{`routes[0].path: segment "b*": "*" and "{name}" must be a whole segment`},
	},
	{
		name: "partial capture",
		yaml: policyWith(`routes: [{path: "/a/x{id}", public: true}]`),
		want: []string{`routes[0].path: segment "x{id}": "*" and "{name}" must be a whole segment`},
	},
	{
		name: "dot segment in pattern",
		yaml: policyWith(`routes: [{path: "/a/../b", public: true}]`),
		want: []string{`routes[0].path: segment "..": dot segments never match a normalised path`},
	},
	{
		name: "percent escape in pattern",
		yaml: policyWith(`routes: [{path: "/a%20b", public: true}]`),
		want: []string{`routes[0].path: segment "a%20b": patterns match decoded paths: write the character itself, not a percent escape`},
	},
	{
		name: "query in pattern",
		yaml: policyWith(`routes: [{path: "/a?b=1", public: true}]`),
		want: []string{`routes[0].path: segment "a?b=1": "?" and "#" are not part of a path`},
	},
	{
		name: "require not in scopes",
		yaml: policyWith("scopes: [read]\nroutes: [{path: /a, require: foo}]"),
		want: []string{`routes[0].require: scope "foo" is not in scopes`},
	},
	{
		name: "public with require",
		yaml: policyWith("scopes: [read]\nroutes: [{path: /a, public: true, require: read}]"),
		want: []string{"routes[0].public: a public route cannot require a scope"},
	},
	{
		name: "public with project",
		yaml: policyWith(`routes: [{path: "/p/{project}", public: true, project: project}]`),
		want: []string{"routes[0].public: a public route cannot check a project"},
	},
	{
		name: "project capture missing",
		yaml: policyWith(`routes: [{path: "/p/{id}", project: project}]`),
		want: []string{"routes[0].project: path has no {project} capture"},
	},
	{
		name: "explicitly empty methods",
		yaml: policyWith("routes: [{methods: [], path: /a}]"),
		want: []string{"routes[0].methods: must not be empty (omit it to match every method)"},
	},
	{
		name: "formBodies not refuse or allow",
		yaml: policyWith("formBodies: accept"),
		want: []string{`formBodies: "accept" must be refuse or allow`},
	},
	{
		name: "lower-case method",
		yaml: policyWith("routes: [{methods: [GET, post], path: /a}]"),
		want: []string{`routes[0].methods[1]: "post" must be upper-case`},
	},
	{
		name: "method not a token",
		yaml: policyWith(`routes: [{methods: ["GE T", ""], path: /a}]`),
		want: []string{
			`routes[0].methods[0]: "GE T" is not an HTTP method token`,
			`routes[0].methods[1]: "" is not an HTTP method token`,
		},
	},
	{
		name: "duplicate method",
		yaml: policyWith("routes: [{methods: [GET, GET], path: /a}]"),
		want: []string{`routes[0].methods[1]: duplicate method "GET"`},
	},
	{
		name: "invalid unmatched",
		yaml: policyWith("unmatched: reject"),
		want: []string{`unmatched: "reject" must be deny, authenticate, require-super or allow`},
	},
	{
		name: "require-super without super scope",
		yaml: policyWith("scopes: [read]\nunmatched: require-super"),
		want: []string{"unmatched: require-super needs a superScope"},
	},
	{
		name: "realm with quote",
		yaml: policyWith(`realm: 'a"b'`),
		want: []string{`realm: must be printable ASCII without '"' or '\'`},
	},
	{
		name: "message with newline",
		yaml: policyWith(`messages: {missingScope: "missing\n{scope}"}`),
		want: []string{"messages.missingScope: must be valid UTF-8 without control characters"},
	},
	{
		name: "every problem at once",
		yaml: `
keys:
  formats: [{prefix: "", charset: hex, length: 8}, {prefix: x_, charset: b64, length: 0}]
  sources: [cookie]
scopes: [read, read]
superScope: root
routes:
  - {methods: [get], path: "/a/**/{}", require: nope}
  - {path: "/p/{id}", public: true, require: read, project: project}
unmatched: maybe
`,
		want: []string{
			"keys.formats[0].prefix: is required",
			"keys.formats[1].charset: must be alphanumeric or hex",
			"keys.formats[1].length: must be between 1 and 512",
			`keys.sources[0]: unknown source "cookie" (must be x-api-key or bearer)`,
			`scopes[1]: duplicate scope "read"`,
			`superScope: scope "root" is not in scopes`,
			`routes[0].methods[0]: "get" must be upper-case`,
			`routes[0].path: "**" is only allowed as the last segment`,
			"routes[0].path: empty capture name",
			`routes[0].require: scope "nope" is not in scopes`,
			"routes[1].public: a public route cannot require a scope",
			"routes[1].public: a public route cannot check a project",
			"routes[1].project: path has no {project} capture",
			`unmatched: "maybe" must be deny, authenticate, require-super or allow`,
		},
	},
	{
		name: "rate limits",
		yaml: policyWith(`
routes:
  - {path: /a, cost: -1}
  - {path: /b, public: true, cost: 2}
  - {path: /c, cost: 1000001}
rateLimits: {default: {limit: 0, duration: 25h}}
`),
		want: []string{
			"routes[0].cost: must be an integer from 0 to 1000000, got -1",
			"routes[1].cost: a public route has no key to take the cost from",
			"routes[2].cost: must be an integer from 0 to 1000000, got 1000001",
			"rateLimits.default.limit: must be an integer from 1 to 1000000000, got 0",
			"rateLimits.default.duration: must be a whole number of seconds from 1s to 24h, got 25h",
		},
	},
	{
		name: "rate limit duration not a duration",
		yaml: policyWith(`rateLimits: {default: {limit: 10, duration: 60}}`),
		want: []string{`rateLimits.default.duration: must be such as "1s", "1m", "1h" or "1d", got "60"`},
	},
	{
		name: "rate limit without a duration",
		yaml: policyWith(`rateLimits: {default: {limit: -3}}`),
		want: []string{
			`rateLimits.default.duration: must be such as "1s", "1m", "1h" or "1d", got ""`,
			"rateLimits.default.limit: must be an integer from 1 to 1000000000, got -3",
		},
	},
}

func TestParseProblems(t *testing.T) {
	for _, tc := range problemCases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.yaml))
			if p != nil {
				t.Errorf("Parse() policy = %+v, want nil", p)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse() error = %v, want *ValidationError", err)
			}
			if !slices.Equal(ve.Problems, tc.want) {
				t.Errorf("Parse() problems:\ngot  %q\nwant %q", ve.Problems, tc.want)
			}
			if got, want := err.Error(), strings.Join(tc.want, "; "); got != want {
				t.Errorf("Error() = %q, want %q", got, want)
			}
		})
	}
}

// decodeCases are files rejected before validation. They also seed FuzzParse.
var decodeCases = []struct {
	name      string
	yaml      string
	want      []string // exact problems; nil to check wantSub only
	wantSub   string   // substring of the single problem
	wantCause bool     // whether the error wraps a decoding error
}{
	{
		name:      "unknown top-level field",
		yaml:      policyWith("extra: 1"),
		want:      []string{"extra: unknown field"},
		wantCause: true,
	},
	{
		name:      "unknown route field",
		yaml:      policyWith("scopes: [read]\nroutes: [{path: /a, requires: read}]"),
		want:      []string{"routes[0].requires: unknown field"},
		wantCause: true,
	},
	{
		name:      "unknown format field",
		yaml:      `keys: {formats: [{prefix: k_, charset: hex, length: 8, size: 3}]}`,
		want:      []string{"keys.formats[0].size: unknown field"},
		wantCause: true,
	},
	{
		name:      "unknown message",
		yaml:      policyWith("messages: {forbidden: no}"),
		want:      []string{"messages.forbidden: unknown field"},
		wantCause: true,
	},
	{
		name:      "field name case differs",
		yaml:      `keys: {Formats: [{prefix: k_, charset: hex, length: 8}]}`,
		want:      []string{"keys.Formats: unknown field"},
		wantCause: true,
	},
	{
		name: "unknown fields nested and listed",
		yaml: policyWith("extra: {a: 1}\nroutes: [{path: /a, Path: /b}, {path: /c, methods: [GET], why: x}]\nmessages: {MissingKey: x}"),
		want: []string{
			"extra: unknown field",
			"messages.MissingKey: unknown field",
			"routes[0].Path: unknown field",
			"routes[1].why: unknown field",
		},
		wantCause: true,
	},
	{
		// sigs.k8s.io/json reports its strict errors only when nothing
		// else failed: the type error comes first, the unknown fields
		// once it is fixed.
		name:      "wrong type and unknown field",
		yaml:      `{keys: {formats: [{prefix: k_, charset: hex, length: eight, size: 3}]}, extra: 1}`,
		want:      []string{"decode: json: cannot unmarshal string into Go struct field Format.keys.formats.length of type int"},
		wantCause: true,
	},
	{
		name: "every unknown field",
		yaml: `
keys: {formats: [{prefix: k_, charset: hex, length: 8}], strip: true}
routes: [{path: /a}, {path: /b, scope: x}]
extra: 1
`,
		want: []string{
			"extra: unknown field",
			"keys.strip: unknown field",
			"routes[1].scope: unknown field",
		},
		wantCause: true,
	},
	{
		name:      "syntax error",
		yaml:      "keys: [",
		wantSub:   "decode: yaml: line 1",
		wantCause: true,
	},
	{
		name:      "wrong type",
		yaml:      `keys: {formats: [{prefix: k_, charset: hex, length: eight}]}`,
		wantSub:   "decode: json: cannot unmarshal string",
		wantCause: true,
	},
	{
		name:      "duplicate key",
		yaml:      policyWith("realm: a\nrealm: b"),
		wantSub:   `key "realm" already set in map`,
		wantCause: true,
	},
	{
		name:      "not a mapping",
		yaml:      "- keys",
		wantSub:   "decode: json: cannot unmarshal array",
		wantCause: true,
	},
	{
		name: "two documents",
		yaml: minimalPolicy + "---\n" + minimalPolicy,
		want: []string{"file must hold exactly one YAML document"},
	},
	{
		name:      "broken second document",
		yaml:      minimalPolicy + "---\nkeys: [\n",
		want:      []string{"file must hold exactly one YAML document"},
		wantCause: true,
	},
}

func TestParseDecodeErrors(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse() error = %v, want *ValidationError", err)
			}
			if tc.want != nil && !slices.Equal(ve.Problems, tc.want) {
				t.Errorf("Parse() problems:\ngot  %q\nwant %q", ve.Problems, tc.want)
			}
			if tc.wantSub != "" && (len(ve.Problems) != 1 || !strings.Contains(ve.Problems[0], tc.wantSub)) {
				t.Errorf("Parse() problems = %q, want one containing %q", ve.Problems, tc.wantSub)
			}
			for _, p := range ve.Problems {
				if strings.Contains(p, "\n") {
					t.Errorf("problem %q spans lines", p)
				}
			}
			if got := errors.Unwrap(err) != nil; got != tc.wantCause {
				t.Errorf("Unwrap() != nil is %v, want %v (err %v)", got, tc.wantCause, errors.Unwrap(err))
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	p, err := Parse([]byte(minimalPolicy))
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	if got, want := p.Keys.Sources, []Source{SourceAPIKey, SourceBearer}; !slices.Equal(got, want) {
		t.Errorf("Keys.Sources = %q, want %q", got, want)
	}
	if !p.Strip() {
		t.Errorf("Strip() = false, want true")
	}
	if got, want := p.Realm, "api"; got != want {
		t.Errorf("Realm = %q, want %q", got, want)
	}
	if got, want := p.Unmatched, UnmatchedDeny; got != want {
		t.Errorf("Unmatched = %q, want %q", got, want)
	}
	want := Messages{
		MissingKey:   "API key required",
		InvalidKey:   "Invalid API key",
		MissingScope: "API key missing required scope: {scope}",
		WrongProject: "Forbidden: API key does not belong to this project",
		RateLimited:  "Rate limit exceeded",
	}
	if p.Messages != want {
		t.Errorf("Messages = %+v, want %+v", p.Messages, want)
	}
	if got, want := p.MintFormat(), (Format{Prefix: "k_", Charset: CharsetHex, Length: 8}); got != want {
		t.Errorf("MintFormat() = %+v, want %+v", got, want)
	}
}

// TestParseScalarsIntoStrings: the YAML is converted to JSON guided by the
// Policy type, as sigs.k8s.io/yaml.Unmarshal does, so a YAML 1.1 boolean or
// a number whose field is a string decodes as that string (policy/doc.go,
// "Loading") rather than as a type error.
func TestParseScalarsIntoStrings(t *testing.T) {
	p, err := Parse([]byte(`
keys: {formats: [{prefix: 42, charset: hex, length: 8}]}
realm: yes
scopes: [on, 7, 1.5]
messages: {missingKey: 404}
`))
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	if got, want := p.Keys.Formats[0].Prefix, "42"; got != want {
		t.Errorf("prefix = %q, want %q", got, want)
	}
	if got, want := p.Realm, "true"; got != want {
		t.Errorf("Realm = %q, want %q", got, want)
	}
	if got, want := p.Scopes, []string{"true", "7", "1.5"}; !slices.Equal(got, want) {
		t.Errorf("Scopes = %q, want %q", got, want)
	}
	if got, want := p.Messages.MissingKey, "404"; got != want {
		t.Errorf("Messages.MissingKey = %q, want %q", got, want)
	}
}

func TestParseOverrides(t *testing.T) {
	p, err := Parse([]byte(`
keys:
  formats:
    - {prefix: new_, charset: alphanumeric, length: 4}
    - {prefix: old_, charset: hex, length: 6}
  sources: [bearer]
  stripCredential: false
realm: "my realm"
scopes: [read, admin]
superScope: admin
unmatched: require-super
messages:
  invalidKey: nope
  missingScope: "needs {scope}, {scope}!"
`))
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	if p.Strip() {
		t.Errorf("Strip() = true, want false")
	}
	if got, want := p.Keys.Sources, []Source{SourceBearer}; !slices.Equal(got, want) {
		t.Errorf("Keys.Sources = %q, want %q", got, want)
	}
	if got, want := p.Realm, "my realm"; got != want {
		t.Errorf("Realm = %q, want %q", got, want)
	}
	if got, want := p.MintFormat().Prefix, "new_"; got != want {
		t.Errorf("MintFormat().Prefix = %q, want %q", got, want)
	}
	if got, want := p.Messages.MissingKey, "API key required"; got != want {
		t.Errorf("Messages.MissingKey = %q, want default %q", got, want)
	}
	if got, want := p.Messages.InvalidKey, "nope"; got != want {
		t.Errorf("Messages.InvalidKey = %q, want %q", got, want)
	}
	if got, want := p.Messages.MissingScopeFor("read"), "needs read, read!"; got != want {
		t.Errorf("MissingScopeFor(read) = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		name string
		raw  string
		want bool
	}{
		{"mint format", "new_aB3z", true},
		{"second format", "old_0a9f3c", true},
		{"second prefix with first charset length", "old_aB3z", false},
		{"unknown prefix", "xxx_aB3z", false},
		{"empty", "", false},
	} {
		if got := p.ValidKey(tc.raw); got != tc.want {
			t.Errorf("%s: ValidKey(%q) = %v, want %v", tc.name, tc.raw, got, tc.want)
		}
	}
}

func TestMissingScopeFor(t *testing.T) {
	tests := []struct {
		name     string
		template string
		scope    string
		want     string
	}{
		{"default", defaultMissingScope, "signals", "API key missing required scope: signals"},
		{"twice", "{scope}/{scope}", "a", "a/a"},
		{"no placeholder", "denied", "a", "denied"},
		{"other braces kept", "{scopes} {scope}", "a", "{scopes} a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Messages{MissingScope: tc.template}
			if got := m.MissingScopeFor(tc.scope); got != tc.want {
				t.Errorf("MissingScopeFor(%q) = %q, want %q", tc.scope, got, tc.want)
			}
		})
	}
}

func TestScopes(t *testing.T) {
	withSuper := &Policy{Scopes: []string{"read", "write", "admin"}, SuperScope: "admin"}
	noSuper := &Policy{Scopes: []string{"read", "write"}}
	tests := []struct {
		name      string
		p         *Policy
		keyScopes []string
		required  string
		want      bool
	}{
		{"has scope", withSuper, []string{"read"}, "read", true},
		{"lacks scope", withSuper, []string{"read"}, "write", false},
		{"super scope grants all", withSuper, []string{"admin"}, "write", true},
		{"super scope grants unknown", withSuper, []string{"admin"}, "other", true},
		{"no scopes", withSuper, nil, "read", false},
		{"empty required fails closed", withSuper, []string{"read", "admin"}, "", false},
		{"no super scope", noSuper, []string{"read"}, "write", false},
		{"empty key scope is not the empty super scope", noSuper, []string{""}, "write", false},
		{"scopes are case-sensitive", noSuper, []string{"READ"}, "read", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Grants(tc.keyScopes, tc.required); got != tc.want {
				t.Errorf("Grants(%q, %q) = %v, want %v", tc.keyScopes, tc.required, got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		scope string
		want  bool
	}{{"read", true}, {"admin", true}, {"Read", false}, {"", false}} {
		if got := withSuper.KnownScope(tc.scope); got != tc.want {
			t.Errorf("KnownScope(%q) = %v, want %v", tc.scope, got, tc.want)
		}
	}
}

func TestZeroPolicy(t *testing.T) {
	var p Policy
	if got := p.MintFormat(); got != (Format{}) {
		t.Errorf("MintFormat() = %+v, want zero", got)
	}
	if !p.Strip() {
		t.Errorf("Strip() = false, want true")
	}
	// Routes not compiled by Parse never match.
	p.Routes = []Route{{Path: "/**", Public: true}}
	if got := p.Match("GET", "/"); got.Route != nil {
		t.Errorf("Match() on an uncompiled route = %+v, want no route", got)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte(minimalPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("keys: {}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(good); err != nil {
		t.Errorf("Load(good) error = %v, want nil", err)
	}

	_, err := Load(bad)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Errorf("Load(bad) error = %v, want *ValidationError", err)
	}
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("Load(bad) error = %v, want it to name %s", err, bad)
	}

	missing := filepath.Join(dir, "missing.yaml")
	_, err = Load(missing)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want fs.ErrNotExist", err)
	}
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(missing) error = %v, want it to name %s", err, missing)
	}
}

func TestValidationErrorEmpty(t *testing.T) {
	if got, want := (&ValidationError{}).Error(), "invalid policy"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestRateLimits: rateLimits.default parses to a limit, headers default to
// shown, a route's cost defaults to 1, and an unknown field is refused.
func TestRateLimits(t *testing.T) {
	p, err := Parse([]byte(minimalPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if p.DefaultRateLimit() != nil || !p.RateLimitHeaders() {
		t.Fatalf("defaults: limit %v, headers %v; want none and shown", p.DefaultRateLimit(), p.RateLimitHeaders())
	}
	p, err = Parse([]byte(policyWith(`
routes:
  - {path: /search, cost: 5}
  - {path: /free, cost: 0}
  - {path: /x}
rateLimits:
  default: {limit: 100, duration: 1m}
  headers: false
`)))
	if err != nil {
		t.Fatal(err)
	}
	if l := p.DefaultRateLimit(); l == nil || l.Limit != 100 || l.Duration != time.Minute {
		t.Fatalf("default limit %v; want 100/1m", l)
	}
	if p.RateLimitHeaders() {
		t.Fatal("headers: false ignored")
	}
	for i, want := range []int64{5, 0, 1} {
		if got := p.Routes[i].RequestCost(); got != want {
			t.Errorf("routes[%d] cost %d, want %d", i, got, want)
		}
	}
	if got := (*Route)(nil).RequestCost(); got != 1 {
		t.Errorf("no route: cost %d, want 1", got)
	}
	_, err = Parse([]byte(policyWith(`rateLimits: {default: {limit: 1, duration: 1s, burst: 5}}`)))
	if err == nil || !strings.Contains(err.Error(), "rateLimits.default.burst: unknown field") {
		t.Fatalf("unknown field: %v", err)
	}
}
