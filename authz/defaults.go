package authz

// Default listen addresses of the enforcement front doors. The manifests and
// envoy.yaml are tested against these, so changing one here without changing
// them fails the build's tests.
const (
	// DefaultGRPCAddr serves the Envoy ext_authz v3 Check and grpc.health.v1.
	DefaultGRPCAddr = ":9191"
	// DefaultHTTPAddr serves forwardAuth /auth, /healthz, /readyz and /metrics.
	DefaultHTTPAddr = ":9192"
)
