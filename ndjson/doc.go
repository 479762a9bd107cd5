// Package ndjson reads newline-delimited streams (NDJSON) line by line,
// with a bound on the length of a line, without holding more than one line
// in memory. It is the line reader of the admin's key import and of the
// replication streams (snapshot, watch) and of a replica's write-ahead log;
// what a line means, and what a too-long line costs, is up to the caller.
package ndjson
