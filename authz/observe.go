package authz

import (
	"context"
	"time"

	"github.com/rs/zerolog"
)

// Decision names as they appear in logs and metrics.
func (k Kind) String() string {
	switch k {
	case Allow:
		return "allow"
	case Unauthenticated:
		return "unauthenticated"
	case Forbidden:
		return "forbidden"
	case RateLimited:
		return "rate_limited"
	case AmbiguousPath:
		return "bad_request"
	case Unavailable:
		return "unavailable"
	}
	return "unknown"
}

// observe logs and counts one decision. Denials log at info, allows at
// debug. Only the key id and the stored display prefix are logged, never
// anything of the presented credential.
func (a *Authorizer) observe(ctx context.Context, r *Request, d *Decision, path string, took time.Duration) {
	if a.metrics != nil {
		a.metrics.counter(r.Frontend, d.Kind, d.Reason).Inc()
		a.metrics.observer(r.Frontend).Observe(took.Seconds())
	}
	level := zerolog.InfoLevel
	if d.Kind == Allow {
		level = zerolog.DebugLevel
	}
	ev := a.log.WithLevel(level)
	if ev == nil {
		return
	}
	if path == "" {
		path = stripQuery(r.Path)
	}
	ev = ev.Str("request_id", r.RequestID).
		Str("frontend", r.Frontend).
		Str("decision", d.Kind.String()).
		Str("reason", d.Reason).
		Str("method", r.Method).
		Str("host", r.Host).
		Str("path", path).
		Str("source_ip", r.SourceIP).
		Dur("duration", took)
	if d.Key != nil {
		ev = ev.Str("key_id", d.Key.ID).Str("key_prefix", d.Key.Prefix)
	}
	if r.Conflict != "" {
		ev = ev.Str("conflict", r.Conflict)
	}
	_ = ctx
	ev.Msg("check")
}

func stripQuery(p string) string {
	for i := 0; i < len(p); i++ {
		if p[i] == '?' || p[i] == '#' {
			return p[:i]
		}
	}
	return p
}
