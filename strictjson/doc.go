// Package strictjson decodes the JSON bodies clients send to extauthz's
// HTTP APIs (the admin API's requests and import lines, the replication
// feed's usage reports), strictly and by one rule: exactly one JSON value,
// member names matched exactly (case included), unknown and repeated
// members refused, and every refusal an error whose message names the
// offending field, fit to show the client. The decoding itself is
// github.com/go-json-experiment/json (encoding/json/v2); this package only
// sets its options and words its errors.
package strictjson
