// Command extauthz is the API-key authorization service: the admin API, the
// replication feed and the Envoy/Traefik front doors in one binary.
//
// This package only wires: it parses flags (each with an EXTAUTHZ_*
// environment variable), builds the logger, opens the store or the
// replica, mounts the handlers of authz, admin and replication on their
// ports, reloads the policy, and drains in order on SIGTERM/SIGINT. The keys
// and users subcommands are thin clients of the admin API.
package main
