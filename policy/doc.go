// Package policy owns the YAML policy file of the authorization sidecar: its
// strict loading, its validation, the API-key format checks, the
// normalisation of request paths and the matching of requests to routes.
//
// The package performs no I/O besides Load reading one file, keeps no global
// state and does not log. A *Policy returned by Parse or Load is immutable and
// safe for concurrent use; a Policy built by hand (not through Parse) has
// uncompiled routes that never match.
//
// # Loading
//
// Parse decodes with sigs.k8s.io/yaml in strict mode: duplicate keys, YAML
// syntax errors, type errors and unknown fields are rejected. Unknown fields
// are reported with their full location (for example
// "routes[1].requires: unknown field"); field names are matched
// case-sensitively, so "Prefix" is unknown even though encoding/json would
// accept it. A file holding more than one YAML document is rejected, so that
// a second document can never be silently ignored. Decoding problems are
// reported before, and instead of, validation. The YAML dialect is YAML 1.1:
// quote scalars such as yes, no, on and off, which otherwise decode as
// booleans (and then as the strings "true" and "false").
//
// Validation then lists every problem it finds, each naming its field, in one
// *ValidationError. Defaults are applied before validation:
//
//   - keys.sources: [x-api-key, bearer]
//   - keys.stripCredential: true
//   - realm: "api"
//   - unmatched: deny
//   - each message independently: missingKey "API key required", invalidKey
//     "Invalid API key", missingScope "API key missing required scope:
//     {scope}", wrongProject "Forbidden: API key does not belong to this
//     project", rateLimited "Rate limit exceeded" (an explicitly empty
//     message also takes the default).
//
// An explicitly empty "methods: []" is a problem rather than "all methods":
// omit the field to match every method. Besides the rules of the file format,
// validation requires: the realm to be printable ASCII without '"' or '\' (it
// is sent in a quoted WWW-Authenticate parameter); messages to be valid UTF-8
// without control characters; scopes to be non-empty, without spaces or
// control characters; sources and methods to be unique. Route order is not
// checked: a route shadowed by an earlier one is not a problem.
//
// # Key formats
//
// A key is a prefix followed by a body of exactly Length characters drawn from
// the charset: "alphanumeric" is [A-Za-z0-9], "hex" is lower-case [0-9a-f].
// Prefixes must be non-empty, printable ASCII without spaces and unique. The
// first format mints new keys; all of them are accepted by ValidKey.
//
// # Path normalisation
//
// NormalizePath turns a request target as a proxy forwards it (Envoy's :path,
// Traefik's X-Forwarded-Uri) into the canonical path routes are matched
// against. It drops everything from the first '?' or '#', then rejects with
// ErrAmbiguousPath anything two back ends could reasonably interpret
// differently:
//
//   - an empty target or one not starting with '/' (asterisk form "*",
//     absolute form "http://host/...");
//   - an encoded slash or backslash (%2F, %5C, any case) and also a literal
//     backslash, which some servers treat as a separator;
//   - a segment that decodes to "." or ".." and contained a percent escape
//     (%2e, .%2E, %2e%2e, ...);
//   - an invalid percent escape ("%zz", a truncated "%4");
//   - a control byte (0x00-0x1F, 0x7F), literal or decoded;
//   - bytes that are not valid UTF-8 once decoded (this also rejects overlong
//     encodings such as %C0%AE).
//
// Otherwise the path is percent-decoded exactly once (so "%252F" becomes the
// literal text "%2F", which is allowed), repeated slashes are merged and dot
// segments are removed as in RFC 3986 section 5.2.4 ("/a/./b/../c" is "/a/c",
// "/.." is "/"). A trailing slash is kept ("/a/" stays "/a/", "/a/b/.." is
// "/a/"). When the path has no '%', no "//" and no "." or ".." segment the
// input substring is returned without allocating.
//
// Because the result is decoded, it is a matching key, not a request target:
// normalising it again is the identity only when it holds no '%', '?' or '#'.
//
// # Route matching
//
// Patterns are split on '/' into segments, each one of: a literal (compared
// case-sensitively with the decoded path segment); "{name}", exactly one
// non-empty segment, captured; "*", exactly one non-empty segment, not
// captured; "**", the rest of the path, possibly empty, allowed only as the
// last segment. "/api/v1/agents/**" matches "/api/v1/agents",
// "/api/v1/agents/" and "/api/v1/agents/x/y", but not "/api/v1/agentsx".
// One trailing slash on the request path is tolerated: "/api/v1/agents"
// also matches "/api/v1/agents/". Patterns themselves must not have empty
// segments (no trailing or repeated '/'), dot segments, '%', '?', '#',
// backslashes or control characters, and "*" or "{...}" must be a whole
// segment. The pattern "/" matches only the root.
//
// Routes are tried in file order and the first whose methods and pattern
// match wins. Methods are upper-case HTTP tokens compared case-sensitively;
// Match upper-cases the ASCII letters of the request method first, without
// allocating and without Unicode case mapping (strings.ToUpper would turn
// "poſt" into "POST"). Omitted methods match every method; GET does not imply
// HEAD.
//
// Match expects a path already returned by NormalizePath; a path not starting
// with '/' matches no route. It does not allocate.
//
// # Scopes
//
// Grants reports whether a key's scopes satisfy a required scope: the scope
// itself or the super scope. It fails closed: an empty required scope is never
// granted, and an empty super scope grants nothing. Callers check
// Route.Require != "" before asking.
package policy
