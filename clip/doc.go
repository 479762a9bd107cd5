// Package clip shortens text from a client or a file before it is quoted
// in an error message: a bounded number of bytes, cut on a character
// boundary, the cut marked.
package clip
