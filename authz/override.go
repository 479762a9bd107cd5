package authz

import (
	"mime"
	"strings"

	"github.com/extauthz/extauthz/policy"
)

// The decision judges the method of the request line and the path of its
// target. Frameworks let a request name another method or path than those
// (docs/security.md, "Method and path overrides"), and the sidecar cannot
// know whether the upstream does, so a request that could is refused.

// MethodOverrideHeaders are the headers with which frameworks let a POST
// stand for another method (Express method-override, ASP.NET Core
// UseHttpMethodOverride, Symfony, Rails' Rack::MethodOverride).
var MethodOverrideHeaders = [...]string{"x-http-method-override", "x-http-method", "x-method-override"}

// PathOverrideHeaders are the headers with which frameworks let a request
// stand for another path (Zend Framework, Symfony before 4.1, Magento 1,
// IIS URL Rewrite).
var PathOverrideHeaders = [...]string{"x-original-url", "x-rewrite-url"}

// NoteHeader marks r for a request header the decision refuses whatever
// else it carries: one of MethodOverrideHeaders or PathOverrideHeaders, in
// any ASCII case and with '_' or '.' for '-', and an identity header
// (IdentityHeaderNames) spelt with '_' or '.'. Servers that map header
// names to variables (CGI, PHP, Rack, Puma) read X_HTTP_METHOD_OVERRIDE,
// and PHP X.HTTP.Method.Override, as X-HTTP-Method-Override, and the doors
// overwrite the identity headers only in their '-' spelling. Both front
// doors call it for every header they do not otherwise read.
func (r *Request) NoteHeader(name string) {
	if len(name) < len(HeaderScopes) || len(name) > len("x-http-method-override") || (name[0]|0x20) != 'x' {
		return
	}
	for _, h := range MethodOverrideHeaders {
		if EqualHeaderFold(name, h) {
			r.MethodOverride = true
			return
		}
	}
	for _, h := range PathOverrideHeaders {
		if EqualHeaderFold(name, h) {
			r.PathOverride = true
			return
		}
	}
	if strings.ContainsAny(name, "_.") {
		for _, h := range IdentityHeaderNames {
			if EqualHeaderFold(name, h) {
				r.IdentityTwin = true
				return
			}
		}
	}
}

// EqualHeaderFold reports whether the header name spells want, a lower-case
// name, in any ASCII case and with '_' or '.' for '-', as servers that map
// header names to variables read it.
func EqualHeaderFold(name, want string) bool {
	if len(name) != len(want) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' || c == '.' {
			c = '-'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// methodOverrideParams are the query parameter names that override the
// method, as policy.ParamNameReadings spells them.
var methodOverrideParams = [...]string{"_method", "x_http_method_override", "x_http_method", "x_method_override"}

// overridden returns the reason to refuse r because an upstream could run
// it as another method or on another path than the decision judges, or "".
func overridden(pol *policy.Policy, r *Request) string {
	switch {
	case r.IdentityTwin:
		return ReasonIdentityTwin
	case r.PathOverride:
		return ReasonPathOverride
	case r.MethodOverride || queryOverridesMethod(r.Path):
		return ReasonOverride
	case hasLower(r.Method):
		// Django's views and ASP.NET Core's routing read "delete" as
		// DELETE; routes list upper-case methods only.
		return ReasonMethodCase
	case r.Method == "POST" && pol.FormBodies != policy.FormBodiesAllow && formContent(r.ContentType):
		return ReasonOverride
	}
	return ""
}

func hasLower(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			return true
		}
	}
	return false
}

// queryOverridesMethod reports whether target's query has a parameter that
// some framework reads as one of methodOverrideParams. Frameworks decode
// names before they look them up, PHP also turns ' ', '.' and '[' into '_'
// and drops leading spaces, Traefik forwards the query with ';' turned
// into '&', and some overrides find "?_method" anywhere in the target
// (Hono before 4.10.8); so each parameter, split at '&', ';' and '?', is
// compared in both spellings policy.ParamNameReadings gives it.
func queryOverridesMethod(target string) bool {
	i := strings.IndexByte(target, '?')
	if i < 0 {
		return false
	}
	q := target[i+1:]
	for len(q) > 0 {
		j := strings.IndexAny(q, "&;?")
		param := q
		if j >= 0 {
			param, q = q[:j], q[j+1:]
		} else {
			q = ""
		}
		name, _, _ := strings.Cut(param, "=")
		if len(name) < len("_method") || (!strings.ContainsAny(name, "%+") && !containsMethod(name)) {
			continue // every override name holds "method"; unescaped, this one does not
		}
		cut, joined := policy.ParamNameReadings(name)
		for _, p := range methodOverrideParams {
			if cut == p || joined == p {
				return true
			}
		}
	}
	return false
}

// containsMethod reports whether s holds "method" in any ASCII case.
func containsMethod(s string) bool {
	const m = "method"
	for i := 0; i+len(m) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(m)], m) {
			return true
		}
	}
	return false
}

// formContent reports whether a POST with these Content-Type values may
// carry a form body, from which Rails, Laravel, Symfony, Express's
// method-override and ASP.NET Core can take the method: a form media type
// (application/x-www-form-urlencoded, multipart/form-data, any multipart),
// or a value that does not parse as one type/subtype (empty, two joined
// with a comma, garbage), or the header given twice, since servers read such
// values differently. A POST without Content-Type is judged: Rack alone
// parses its body as a form (docs/security.md says what to do there).
func formContent(values []string) bool {
	switch len(values) {
	case 0:
		return false
	case 1:
	default:
		return true
	}
	v := strings.ToLower(values[0])
	if strings.Contains(v, "x-www-form-urlencoded") || strings.Contains(v, "form-data") || strings.Contains(v, "multipart") {
		return true
	}
	mt, _, err := mime.ParseMediaType(v)
	return err != nil || strings.Count(mt, "/") != 1
}
