package manifests

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

const rateLimitEnvoyYAML = "../examples/envoy-ratelimit.yaml"

// TestEnvoyRateLimitExample: the global rate-limit example is a valid
// bootstrap whose ratelimit filter runs after ext_authz, and whose route
// builds the descriptor from the key_id and the limit from the rate_limit
// metadata the gRPC door sends.
func TestEnvoyRateLimitExample(t *testing.T) {
	b, err := loadBootstrap(loadFile(t, rateLimitEnvoyYAML))
	if err != nil {
		t.Fatalf("%s: %v", rateLimitEnvoyYAML, err)
	}
	var hcm hcmv3.HttpConnectionManager
	if err := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range hcm.GetHttpFilters() {
		names = append(names, f.GetName())
		if f.GetName() == "envoy.filters.http.ratelimit" {
			var rl ratelimitv3.RateLimit
			if err := f.GetTypedConfig().UnmarshalTo(&rl); err != nil {
				t.Fatal(err)
			}
			if rl.GetDomain() != "extauthz" {
				t.Errorf("ratelimit domain %q", rl.GetDomain())
			}
		}
	}
	if len(names) != 3 || names[0] != "envoy.filters.http.ext_authz" || names[1] != "envoy.filters.http.ratelimit" {
		t.Fatalf("http filters %v; want ext_authz, then ratelimit, then the router", names)
	}
	var limits []*routev3.RateLimit
	for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		limits = append(limits, r.GetRoute().GetRateLimits()...)
	}
	if len(limits) != 1 {
		t.Fatalf("%d rate_limits; want 1", len(limits))
	}
	md := limits[0].GetActions()[0].GetMetadata()
	if md.GetDescriptorKey() != "api_key_id" || md.GetMetadataKey().GetKey() != "envoy.filters.http.ext_authz" || md.GetMetadataKey().GetPath()[0].GetKey() != "key_id" {
		t.Errorf("descriptor action %v", md)
	}
	ov := limits[0].GetLimit().GetDynamicMetadata().GetMetadataKey()
	if ov.GetKey() != "envoy.filters.http.ext_authz" || ov.GetPath()[0].GetKey() != "rate_limit" {
		t.Errorf("limit override %v", ov)
	}
}
