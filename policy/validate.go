package policy

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/extauthz/extauthz/keystore"
)

// applyDefaults fills the fields the file may omit.
func (p *Policy) applyDefaults() {
	if len(p.Keys.Sources) == 0 {
		p.Keys.Sources = []Source{SourceAPIKey, SourceBearer}
	}
	if p.Realm == "" {
		p.Realm = defaultRealm
	}
	if p.Unmatched == "" {
		p.Unmatched = UnmatchedDeny
	}
	if p.FormBodies == "" {
		p.FormBodies = FormBodiesRefuse
	}
	m := &p.Messages
	for _, f := range []struct {
		field *string
		def   string
	}{
		{&m.MissingKey, defaultMissingKey},
		{&m.InvalidKey, defaultInvalidKey},
		{&m.MissingScope, defaultMissingScope},
		{&m.WrongProject, defaultWrongProject},
		{&m.RateLimited, defaultRateLimited},
	} {
		if *f.field == "" {
			*f.field = f.def
		}
	}
}

// problems collects validation problems, each prefixed with its field.
type problems []string

func (ps *problems) add(field, format string, args ...any) {
	*ps = append(*ps, field+": "+fmt.Sprintf(format, args...))
}

// validate checks a decoded policy with defaults applied, compiles its routes
// and returns every problem found.
func (p *Policy) validate() []string {
	var ps problems
	p.validateKeys(&ps)
	if !quotableASCII(p.Realm) {
		ps.add("realm", `must be printable ASCII without '"' or '\'`)
	}
	scopes := p.validateScopes(&ps)
	for i := range p.Routes {
		p.Routes[i].compile(fmt.Sprintf("routes[%d]", i), scopes, &ps)
	}
	p.compileIsolations(&ps)
	p.validateRateLimits(&ps)
	switch p.Unmatched {
	case UnmatchedAllow:
		if len(p.isolations) > 0 {
			ps.add("unmatched", "allow would admit requests without a key under the project-isolated paths %s; use deny, authenticate or require-super", strings.Join(p.Isolations(), ", "))
		}
	case UnmatchedDeny, UnmatchedAuthenticate:
	case UnmatchedRequireSuper:
		if p.SuperScope == "" {
			ps.add("unmatched", "require-super needs a superScope")
		}
	default:
		ps.add("unmatched", "%q must be deny, authenticate, require-super or allow", p.Unmatched)
	}
	if p.FormBodies != FormBodiesRefuse && p.FormBodies != FormBodiesAllow {
		ps.add("formBodies", "%q must be refuse or allow", p.FormBodies)
	}
	m := p.Messages
	for _, f := range []struct{ name, text string }{
		{"missingKey", m.MissingKey},
		{"invalidKey", m.InvalidKey},
		{"missingScope", m.MissingScope},
		{"wrongProject", m.WrongProject},
		{"rateLimited", m.RateLimited},
	} {
		if !textSafe(f.text) {
			ps.add("messages."+f.name, "must be valid UTF-8 without control characters")
		}
	}
	return ps
}

func (p *Policy) validateKeys(ps *problems) {
	if len(p.Keys.Formats) == 0 {
		ps.add("keys.formats", "at least one format is required")
	}
	prefixes := make(map[string]int, len(p.Keys.Formats))
	for i, f := range p.Keys.Formats {
		field := fmt.Sprintf("keys.formats[%d]", i)
		switch {
		case f.Prefix == "":
			ps.add(field+".prefix", "is required")
		case !printableASCII(f.Prefix):
			ps.add(field+".prefix", "must be printable ASCII without spaces")
		default:
			if j, dup := prefixes[f.Prefix]; dup {
				ps.add(field+".prefix", "%q duplicates keys.formats[%d]", f.Prefix, j)
			} else {
				prefixes[f.Prefix] = i
			}
		}
		if f.Charset != CharsetAlphanumeric && f.Charset != CharsetHex {
			ps.add(field+".charset", "must be alphanumeric or hex")
		}
		if f.Length < 1 || f.Length > maxKeyLength {
			ps.add(field+".length", "must be between 1 and %d", maxKeyLength)
		}
	}
	seen := make(map[Source]bool, len(p.Keys.Sources))
	for i, s := range p.Keys.Sources {
		field := fmt.Sprintf("keys.sources[%d]", i)
		switch {
		case s != SourceAPIKey && s != SourceBearer:
			ps.add(field, "unknown source %q (must be x-api-key or bearer)", s)
		case seen[s]:
			ps.add(field, "duplicate source %q", s)
		}
		seen[s] = true
	}
}

// validateScopes checks scopes and superScope and returns the set of scopes.
func (p *Policy) validateScopes(ps *problems) map[string]bool {
	scopes := make(map[string]bool, len(p.Scopes))
	for i, s := range p.Scopes {
		field := fmt.Sprintf("scopes[%d]", i)
		switch {
		case s == "":
			ps.add(field, "must not be empty")
		case !validScopeName(s):
			ps.add(field, "%q must be valid UTF-8 without spaces or control characters", s)
		case scopes[s]:
			ps.add(field, "duplicate scope %q", s)
		}
		scopes[s] = true
	}
	if p.SuperScope != "" && !scopes[p.SuperScope] {
		ps.add("superScope", "scope %q is not in scopes", p.SuperScope)
	}
	return scopes
}

// compile validates the route and compiles its pattern.
func (r *Route) compile(field string, scopes map[string]bool, ps *problems) {
	if r.Methods != nil && len(r.Methods) == 0 {
		ps.add(field+".methods", "must not be empty (omit it to match every method)")
	}
	seen := make(map[string]bool, len(r.Methods))
	for i, m := range r.Methods {
		mf := fmt.Sprintf("%s.methods[%d]", field, i)
		switch {
		case !isToken(m):
			ps.add(mf, "%q is not an HTTP method token", m)
		case strings.ToUpper(m) != m:
			ps.add(mf, "%q must be upper-case", m)
		case seen[m]:
			ps.add(mf, "duplicate method %q", m)
		}
		seen[m] = true
	}
	pt, pathProblems := compilePattern(r.Path)
	for _, msg := range pathProblems {
		ps.add(field+".path", "%s", msg)
	}
	if r.Public {
		if r.Require != "" {
			ps.add(field+".public", "a public route cannot require a scope")
		}
		if r.Project != "" {
			ps.add(field+".public", "a public route cannot check a project")
		}
	}
	if r.Require != "" && !scopes[r.Require] {
		ps.add(field+".require", "scope %q is not in scopes", r.Require)
	}
	if r.Cost != nil {
		switch {
		case *r.Cost < 0 || *r.Cost > MaxCost:
			ps.add(field+".cost", "must be an integer from 0 to %d, got %d", MaxCost, *r.Cost)
		case r.Public:
			ps.add(field+".cost", "a public route has no key to take the cost from")
		}
	}
	if r.Project != "" {
		pt.project = pt.captureIndex(r.Project)
		if pt.project < 0 {
			ps.add(field+".project", "path has no {%s} capture", r.Project)
		}
	}
	r.pattern = pt
}

// validateRateLimits checks and parses rateLimits.default.
func (p *Policy) validateRateLimits(ps *problems) {
	p.RateLimits.limit = nil
	d := p.RateLimits.Default
	if d == nil {
		return
	}
	const field = "rateLimits.default"
	l := keystore.RateLimit{Limit: d.Limit}
	dur, err := keystore.ParseRateLimitDuration(d.Duration)
	if err != nil {
		ps.add(field+".duration", "%s", strings.TrimPrefix(err.Error(), "duration "))
		if d.Limit < 1 || d.Limit > keystore.MaxRateLimit {
			ps.add(field+".limit", "must be an integer from 1 to %d, got %d", keystore.MaxRateLimit, d.Limit)
		}
		return
	}
	l.Duration = dur
	if problems := l.Problems(); len(problems) > 0 {
		for _, pr := range problems {
			ps.add(field+"."+pr.Field, "%s", pr.Message)
		}
		return
	}
	p.RateLimits.limit = &l
}

// compileIsolations collects the path sets that project routes isolate and
// refuses what would admit a request under one of them without the project
// check: a public route that can match there, and two isolations that
// overlap but name their project in different places. Every other route
// that matches under an isolated prefix is isolated too (Match), so a
// broader grant such as "/**" later in the file cannot shadow the check.
func (p *Policy) compileIsolations(ps *problems) {
	p.isolations = nil
	p.foldSensitive = false
	owner := []int{} // index of the first route of each isolation
	for i := range p.Routes {
		r := &p.Routes[i]
		for _, s := range r.pattern.segs {
			if s.kind == segLiteral && hasUpperASCII(s.text) {
				p.foldSensitive = true
			}
		}
		if r.Project == "" || r.Public || !r.pattern.compiled || r.pattern.project < 0 {
			continue
		}
		iso := r.pattern.isolated()
		dup := false
		for j := range p.isolations {
			if p.isolations[j].String() == iso.String() {
				dup = true
				break
			}
			if overlaps(&p.isolations[j], &iso) {
				ps.add(fmt.Sprintf("routes[%d].project", i), "isolated paths %s overlap %s of routes[%d]; name the project in the same place", iso.String(), p.isolations[j].String(), owner[j])
				dup = true
				break
			}
		}
		if !dup {
			p.isolations = append(p.isolations, iso)
			owner = append(owner, i)
		}
	}
	for i := range p.Routes {
		r := &p.Routes[i]
		if !r.Public || !r.pattern.compiled {
			continue
		}
		for j := range p.isolations {
			if overlaps(&r.pattern, &p.isolations[j]) {
				ps.add(fmt.Sprintf("routes[%d].public", i), "%s can match under %s, which routes[%d] isolates by project: a public route there would admit requests without a key", r.Path, p.isolations[j].String(), owner[j])
			}
		}
	}
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlphanumeric(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func validScopeName(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// quotableASCII reports whether s fits in an HTTP quoted-string without
// escaping: printable ASCII (spaces allowed) without '"' or '\'.
func quotableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// textSafe reports whether s can be sent to a client as is: valid UTF-8
// without control characters.
func textSafe(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
