//go:build extauthz_broken_reads

package cluster

// A deliberately broken build, for the linearizability test only
// (cmd/extauthz TestHALinearizabilityCatchesStaleReads): a member answers
// reads from its own store without waiting for the read index, so a
// member cut off from the others, or merely behind, serves stale state.
const servesStaleReads = true
