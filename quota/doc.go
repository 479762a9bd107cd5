// Package quota is a sidecar's share of the keys' quotas (usage limits):
// the uses it allowed that the admin has not yet subtracted, and the
// local allowance that bounds them.
//
// The admin holds every quota's remaining count and subtracts the uses
// sidecars report (keystore.Store.RecordUsage). Between two reports a
// sidecar allows a quota'd key at most min(remaining as replicated,
// allowance) uses that the replicated count does not yet reflect. A use
// stops counting against the allowance only when the admin acknowledged
// the report that carried it and the replica reached the revision the
// acknowledgement named, so the remaining count the sidecar then reads
// already has it subtracted. A sidecar that cannot report, or does not
// hear back, spends its allowance and then denies: at any moment each
// sidecar holds at most one allowance of uses the admin does not know of.
package quota
