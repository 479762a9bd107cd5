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
//   - formBodies: refuse (or allow: the upstream never takes the method
//     from a form body)
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
// checked: a route shadowed by an earlier one is not a problem (but see
// project isolation below).
//
// # Rate limits
//
// rateLimits.default ({limit, duration}) is the rate limit of every key
// without its own (none: such keys are unlimited), with a limit from 1 to
// 1,000,000,000 per a whole number of seconds from 1s to 24h;
// rateLimits.headers (default true) shows the RateLimit header fields to
// clients. A route's cost (0 to MaxCost, default 1, not on a public route)
// is what a request takes from its key's bucket.
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
// Traefik's X-Forwarded-Uri, nginx's $request_uri) into the canonical path
// routes are matched against: the path without its query, percent-decoded
// once. The decision stands on one rule: a request is judged only when every
// mainstream upstream would act on the same resource. A target that is not
// already canonical but for its escapes, or that some upstream could read as
// another path, is refused with ErrAmbiguousPath instead of guessed:
//
//   - not origin-form: empty, not starting with '/' ("*", "http://host/..."),
//     or holding a '#' before the query;
//   - an empty segment ("//", but not the trailing slash) or a segment made
//     only of dots (".", "..", "..."), raw or percent-encoded: Express and
//     nginx's $request_uri pass them on literally while others resolve them,
//     so "/a/../b" may reach an upstream handler for "/a/*";
//   - a segment ending in '.' or ' ', raw or encoded: Windows-style servers
//     trim them ("/projects./b" is "/projects/b" there);
//   - a ';' anywhere in the path, raw or as %3B: servlet containers (Tomcat,
//     Jetty, Spring) drop ";parameters" from every segment and resolve
//     "..;" as "..";
//   - a backslash, raw or as %5C, and an encoded slash (%2F): some servers
//     treat them as separators;
//   - a percent escape left after decoding ("%252e" decodes to "%2e"), or
//     a UTF-16 "%uXXXX" escape ("%25u002e" decodes to "%u002e", which IIS,
//     System.Web's HttpUtility.UrlDecode and JavaScript's unescape read as
//     "."): an upstream that decodes twice would read another path;
//   - an invalid escape, a control byte (0x00-0x1F, 0x7F) literal or
//     decoded, and bytes that are not valid UTF-8 once decoded (overlong
//     forms such as %C0%AE included);
//   - a non-ASCII character that NFKC, case mapping or simple case folding
//     turns into ASCII (full-width "．" and "／", the one-dot leader, the
//     Kelvin sign, "ſ", the "ﬁ" ligature), or one of a few look-alikes of
//     '/', '\' and '.' that best-fit code-page conversions map to them.
//
// Otherwise the path is decoded exactly once. When it holds no escape the
// input substring is returned without allocating. The result is a matching
// key, not a request target.
//
// # Route matching
//
// Patterns are split on '/' into segments, each one of: a literal (compared
// with the decoded path segment); "{name}", exactly one non-empty segment,
// captured; "*", exactly one non-empty segment, not captured; "**", the rest
// of the path, possibly empty, allowed only as the last segment.
// "/api/v1/agents/**" matches "/api/v1/agents", "/api/v1/agents/" and
// "/api/v1/agents/x/y", but not "/api/v1/agentsx". One trailing slash on the
// request path is tolerated: "/api/v1/agents" also matches "/api/v1/agents/".
// Patterns themselves must not have empty segments (no trailing or repeated
// '/'), dot segments, '%', '?', '#', backslashes or control characters, and
// "*" or "{...}" must be a whole segment. The pattern "/" matches only the
// root.
//
// Routes are tried in file order and the first whose methods and pattern
// match wins. Methods are upper-case HTTP tokens compared exactly with the
// request method: "get" is another method than GET, as it is for every
// server that routes on methods. Omitted methods match every method; GET does
// not imply HEAD.
//
// Case: literals are compared exactly, but Express and ASP.NET Core route
// without ASCII case. So when case could matter (the path holds an upper-case
// letter, or a literal does) Match matches the path a second time with ASCII
// case folded, and a path for which the two disagree (another route, or
// another project isolation) is Ambiguous and must be refused: "/HEALTHZ" is
// not judged as the public "/healthz", nor as the unmatched path it is for a
// case-sensitive upstream. A path whose case changes nothing, such as an id
// in upper case, is judged.
//
// Project isolation: a route with "project: name" isolates every path under
// its pattern up to and including the "{name}" capture: for
// "/api/v1/projects/{project}/**" that is every path below
// "/api/v1/projects/<id>". A request there must carry a key of the project
// <id> whichever route matches it, so a later catch-all such as "/**" that
// grants read or write cannot shadow the check. Validation refuses what
// would admit a request there without a key (a public route that can match
// under an isolated prefix, compared without case; "unmatched: allow") and
// two isolations that overlap but capture the project in different places.
// Isolations lists the isolated paths; "extauthz policy check" prints them.
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
