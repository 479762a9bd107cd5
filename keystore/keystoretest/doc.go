// Package keystoretest is what tests of the packages above keystore share:
// Open and OpenReplica open a store in the test's temporary directory
// that runs bbolt's consistency check when the test ends, Clock is a clock
// that moves only when told, NewKey mints key fixtures, and LogBuffer
// collects log output written from several goroutines. NoRawKeysInFiles
// searches data dirs for raw keys.
package keystoretest
