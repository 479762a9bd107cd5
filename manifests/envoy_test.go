package manifests

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// The typed configs envoy.yaml may use. Importing a go-control-plane package registers its types,
// so protojson can resolve the "@type" of every Any; a type that is not listed here fails the
// parse instead of being skipped.
var (
	_ = &filev3.FileAccessLog{}
	_ = &streamv3.StdoutAccessLog{}
	_ = &routerv3.Router{}
	_ = &tlsv3.UpstreamTlsContext{}
	_ = &upstreamhttpv3.HttpProtocolOptions{}
)

const (
	extAuthzFilter   = "envoy.filters.http.ext_authz" // canonical name, also the dynamic metadata namespace
	httpProtocolOpts = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	healthPath       = "/healthz"
)

// loadBootstrap parses an Envoy YAML config into the v3 Bootstrap, resolving every typed config,
// and validates it and every typed config inside it (protoc-gen-validate rules).
func loadBootstrap(y []byte) (*bootstrapv3.Bootstrap, error) {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(j, b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	var errs []string
	validateAnys(b.ProtoReflect(), "bootstrap", &errs)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return b, nil
}

// validateAnys unpacks every Any below m and runs its validation, recursively.
func validateAnys(m protoreflect.Message, where string, errs *[]string) {
	visit := func(v protoreflect.Message) {
		a, ok := v.Interface().(*anypb.Any)
		if !ok {
			validateAnys(v, where, errs)
			return
		}
		inner, err := a.UnmarshalNew()
		if err != nil {
			*errs = append(*errs, fmt.Sprintf("%s: %s: %v", where, a.GetTypeUrl(), err))
			return
		}
		if v, ok := inner.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				*errs = append(*errs, fmt.Sprintf("%s: %s: %v", where, a.GetTypeUrl(), err))
			}
		}
		validateAnys(inner.ProtoReflect(), a.GetTypeUrl(), errs)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				visit(v.List().Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				visit(mv.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			visit(v.Message())
		}
		return true
	})
}

// envoyWant are the ports an Envoy config must agree with. The ext_authz cluster must reach GRPC
// (gRPC mode) or HTTP (HTTP mode) on loopback; routes that skip ext_authz, other than the app's
// health check, must go to Admin.
type envoyWant struct {
	GRPC, HTTP, Admin uint32
}

type hostPort struct {
	Host string
	Port uint32
}

// envoyFacts is what checkEnvoy learnt, for cross-checks with the pod around Envoy.
type envoyFacts struct {
	Mode          string // "grpc" or "http"
	ListenerPorts []uint32
	AdminHosts    []hostPort // endpoints of the clusters key management is routed to
	// AdminTLS is the UpstreamTlsContext of the cluster of each admin endpoint; nil: plain HTTP.
	AdminTLS map[hostPort]*tlsv3.UpstreamTlsContext
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func endpointsOf(c *clusterv3.Cluster) []hostPort {
	var out []hostPort
	for _, le := range c.GetLoadAssignment().GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, hostPort{sa.GetAddress(), sa.GetPortValue()})
		}
	}
	return out
}

func exactPatterns(l *matcherv3.ListStringMatcher) []string {
	var out []string
	for _, p := range l.GetPatterns() {
		if e := p.GetExact(); e != "" {
			out = append(out, strings.ToLower(e))
		}
	}
	return out
}

// formatsOf returns every format string of an access log.
func formatsOf(al *accesslogv3.AccessLog) ([]string, error) {
	var out []string
	var addStruct func(*structpb.Value)
	addStruct = func(v *structpb.Value) {
		switch k := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			out = append(out, k.StringValue)
		case *structpb.Value_StructValue:
			for _, f := range k.StructValue.GetFields() {
				addStruct(f)
			}
		}
	}
	addSFS := func(s *corev3.SubstitutionFormatString) {
		//lint:ignore SA1019 a config may still use the deprecated form; its fields must be read too
		out = append(out, s.GetTextFormat(), s.GetTextFormatSource().GetInlineString())
		if s.GetJsonFormat() != nil {
			addStruct(structpb.NewStructValue(s.GetJsonFormat()))
		}
	}
	inner, err := al.GetTypedConfig().UnmarshalNew()
	if err != nil {
		return nil, err
	}
	switch l := inner.(type) {
	case *streamv3.StdoutAccessLog:
		addSFS(l.GetLogFormat())
	case *streamv3.StderrAccessLog:
		addSFS(l.GetLogFormat())
	case *filev3.FileAccessLog:
		//lint:ignore SA1019 a config may still use the deprecated forms; their fields must be read too
		out = append(out, l.GetFormat())
		//lint:ignore SA1019 as above
		for _, s := range []*structpb.Struct{l.GetJsonFormat(), l.GetTypedJsonFormat()} {
			if s != nil {
				addStruct(structpb.NewStructValue(s))
			}
		}
		addSFS(l.GetLogFormat())
	}
	return out, nil
}

// checkEnvoy checks an Envoy bootstrap against the ports of extauthz and returns what it found
// and every problem.
func checkEnvoy(b *bootstrapv3.Bootstrap, want envoyWant) (envoyFacts, []string) {
	var f envoyFacts
	var p problems
	if sa := b.GetAdmin().GetAddress().GetSocketAddress(); sa != nil && !isLoopback(sa.GetAddress()) {
		p.add("admin interface on %s: bind it to 127.0.0.1", sa.GetAddress())
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	hcms := 0
	for _, l := range b.GetStaticResources().GetListeners() {
		f.ListenerPorts = append(f.ListenerPorts, l.GetAddress().GetSocketAddress().GetPortValue())
		for _, fc := range l.GetFilterChains() {
			for _, nf := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if !nf.GetTypedConfig().MessageIs(hcm) {
					continue
				}
				if err := nf.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					p.add("listener %s: %v", l.GetName(), err)
					continue
				}
				hcms++
				checkHCM("listener "+l.GetName(), hcm, clusters, want, &f, &p)
			}
		}
	}
	if hcms == 0 {
		p.add("no listener with an http_connection_manager")
	}
	return f, p
}

func checkTimeout(where string, d *durationpb.Duration, p *problems) {
	switch {
	case d == nil:
		p.add("%s: no explicit timeout (Envoy's default is 200ms)", where)
	case d.AsDuration() <= 0 || d.AsDuration() > 2*time.Second:
		p.add("%s: timeout %s; a check should answer well within a second", where, d.AsDuration())
	}
}

// checkLocalCluster checks a cluster that must reach extauthz in the same pod on port.
func checkLocalCluster(where string, c *clusterv3.Cluster, port uint32, p *problems) {
	eps := endpointsOf(c)
	if len(eps) == 0 {
		p.add("%s: no endpoints", where)
	}
	for _, ep := range eps {
		if !isLoopback(ep.Host) || ep.Port != port {
			p.add("%s: endpoint %s:%d, want 127.0.0.1:%d (extauthz in the same pod)", where, ep.Host, ep.Port, port)
		}
	}
	if t := c.GetCommonLbConfig().GetHealthyPanicThreshold(); t == nil || t.GetValue() != 0 {
		p.add("%s: common_lb_config.healthy_panic_threshold must be {value: 0}, or an unhealthy single host still gets every request", where)
	}
	if len(c.GetHealthChecks()) == 0 {
		p.add("%s: no health check", where)
	}
}

func checkHCM(where string, hcm *hcmv3.HttpConnectionManager, clusters map[string]*clusterv3.Cluster, want envoyWant, f *envoyFacts, p *problems) {
	filters := hcm.GetHttpFilters()
	names := map[string]bool{}
	authzIdx, routerIdx := -1, -1
	var az *extauthzv3.ExtAuthz
	var azName string
	for i, hf := range filters {
		names[hf.GetName()] = true
		tc := hf.GetTypedConfig()
		switch {
		case tc.MessageIs(&extauthzv3.ExtAuthz{}):
			if az != nil {
				p.add("%s: more than one ext_authz filter", where)
			}
			az = &extauthzv3.ExtAuthz{}
			if err := tc.UnmarshalTo(az); err != nil {
				p.add("%s: %v", where, err)
			}
			authzIdx, azName = i, hf.GetName()
		case tc.MessageIs(&routerv3.Router{}):
			routerIdx = i
		}
	}
	if az == nil {
		p.add("%s: no ext_authz http filter", where)
		return
	}
	if a := hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); a != corev3.HttpProtocolOptions_REJECT_REQUEST {
		p.add("%s: headers_with_underscores_action is %v, want REJECT_REQUEST: an upstream that folds '_' into '-' would take a client's x_auth_user_id for the identity header", where, a)
	}
	if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() {
		p.add("%s: normalize_path and merge_slashes must be on: Envoy must route on the path it forwards", where)
	}
	if routerIdx != len(filters)-1 || authzIdx > routerIdx {
		p.add("%s: the router must be the last http filter, after ext_authz", where)
	}
	fw := where + " filter " + azName
	if az.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		p.add("%s: transport_api_version is not V3", fw)
	}
	if az.GetFailureModeAllow() {
		p.add("%s: failure_mode_allow is true: an extauthz outage would let every request through", fw)
	}
	if c := az.GetStatusOnError().GetCode(); c != typev3.StatusCode_ServiceUnavailable {
		p.add("%s: status_on_error is %d, want 503 (ServiceUnavailable) so outages are not mistaken for denials", fw, c)
	}

	metaKey := "key_id"
	switch {
	case az.GetGrpcService() != nil:
		f.Mode = "grpc"
		gs := az.GetGrpcService()
		checkTimeout(fw+" grpc_service", gs.GetTimeout(), p)
		name := gs.GetEnvoyGrpc().GetClusterName()
		c := clusters[name]
		if c == nil {
			p.add("%s: grpc_service.envoy_grpc cluster %q is not defined", fw, name)
			break
		}
		cw := "cluster " + name
		checkLocalCluster(cw, c, want.GRPC, p)
		opts := &upstreamhttpv3.HttpProtocolOptions{}
		if a := c.GetTypedExtensionProtocolOptions()[httpProtocolOpts]; a == nil || a.UnmarshalTo(opts) != nil ||
			opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			p.add("%s: HTTP/2 is not configured (typed_extension_protocol_options %s explicit_http_config.http2_protocol_options)", cw, httpProtocolOpts)
		}
		for _, hc := range c.GetHealthChecks() {
			g := hc.GetGrpcHealthCheck()
			if g == nil {
				p.add("%s: health check is not a grpc_health_check", cw)
			} else if s := g.GetServiceName(); s != "" && s != authzService {
				p.add("%s: grpc_health_check service_name %q is not registered by extauthz", cw, s)
			}
		}
	case az.GetHttpService() != nil:
		f.Mode = "http"
		hs := az.GetHttpService()
		checkTimeout(fw+" http_service.server_uri", hs.GetServerUri().GetTimeout(), p)
		name := hs.GetServerUri().GetCluster()
		if c := clusters[name]; c == nil {
			p.add("%s: http_service.server_uri cluster %q is not defined", fw, name)
		} else {
			cw := "cluster " + name
			checkLocalCluster(cw, c, want.HTTP, p)
			for _, hc := range c.GetHealthChecks() {
				if hc.GetHttpHealthCheck().GetPath() != "/readyz" {
					p.add("%s: health check is not an http_health_check of /readyz", cw)
				}
			}
		}
		if hs.GetPathPrefix() != "/auth" {
			p.add("%s: path_prefix is %q, want /auth", fw, hs.GetPathPrefix())
		}
		if !slices.Contains(exactPatterns(az.GetAllowedHeaders()), "x-api-key") {
			p.add("%s: allowed_headers lacks x-api-key: Envoy would not send the API key to extauthz", fw)
		}
		ar := hs.GetAuthorizationResponse()
		for _, h := range identityHeaders {
			if !slices.Contains(exactPatterns(ar.GetAllowedUpstreamHeaders()), strings.ToLower(h)) {
				p.add("%s: authorization_response.allowed_upstream_headers lacks %s", fw, strings.ToLower(h))
			}
		}
		for _, h := range []string{"www-authenticate", "content-type", "retry-after"} {
			if !slices.Contains(exactPatterns(ar.GetAllowedClientHeaders()), h) {
				p.add("%s: authorization_response.allowed_client_headers lacks %s", fw, h)
			}
		}
		metaKey = "x-auth-key-id"
		if !slices.Contains(exactPatterns(ar.GetDynamicMetadataFromHeaders()), metaKey) {
			p.add("%s: authorization_response.dynamic_metadata_from_headers lacks %s", fw, metaKey)
		}
	default:
		p.add("%s: neither grpc_service nor http_service", fw)
	}

	// Access log with the key id extauthz put in the dynamic metadata.
	wantFmt := "%DYNAMIC_METADATA(" + extAuthzFilter + ":" + metaKey + ")%"
	found := false
	for _, al := range hcm.GetAccessLog() {
		fs, err := formatsOf(al)
		if err != nil {
			p.add("%s: access log %s: %v", where, al.GetName(), err)
		}
		found = found || slices.ContainsFunc(fs, func(s string) bool { return strings.Contains(s, wantFmt) })
	}
	if !found {
		p.add("%s: no access log format contains %s", where, wantFmt)
	}

	checkRoutes(where, hcm, clusters, names, azName, want, f, p)
}

// authzDisabled reports whether typed_per_filter_config turns the ext_authz filter off.
func authzDisabled(where string, cfg map[string]*anypb.Any, names map[string]bool, azName string, p *problems) bool {
	for key := range cfg {
		if !names[key] {
			p.add("%s: typed_per_filter_config key %q names no http filter (the ext_authz filter is %q): Envoy ignores it", where, key, azName)
		}
	}
	a := cfg[azName]
	if a == nil {
		return false
	}
	per := &extauthzv3.ExtAuthzPerRoute{}
	if err := a.UnmarshalTo(per); err != nil {
		p.add("%s: per-route ext_authz config: %v", where, err)
		return false
	}
	return per.GetDisabled()
}

func checkRoutes(where string, hcm *hcmv3.HttpConnectionManager, clusters map[string]*clusterv3.Cluster, names map[string]bool, azName string, want envoyWant, f *envoyFacts, p *problems) {
	rc := hcm.GetRouteConfig()
	if rc == nil {
		p.add("%s: route_config must be inline (static) to be checked", where)
		return
	}
	healthBypass := false
	var adminMatches []string
	for _, vh := range rc.GetVirtualHosts() {
		vw := where + " virtual host " + vh.GetName()
		if authzDisabled(vw, vh.GetTypedPerFilterConfig(), names, azName, p) {
			p.add("%s: ext_authz disabled for the whole virtual host", vw)
		}
		routes := vh.GetRoutes()
		for i, r := range routes {
			rw := fmt.Sprintf("%s route %d %q", vw, i, r.GetName())
			cname := r.GetRoute().GetCluster()
			c := clusters[cname]
			if r.GetRoute() != nil && c == nil {
				p.add("%s: cluster %q is not defined", rw, cname)
			}
			if !authzDisabled(rw, r.GetTypedPerFilterConfig(), names, azName, p) {
				continue
			}
			if m := r.GetMatch(); m.GetPath() == healthPath && len(m.GetHeaders()) == 0 {
				healthBypass = true
				continue
			}
			eps := endpointsOf(c)
			if want.Admin == 0 || len(eps) == 0 || slices.ContainsFunc(eps, func(ep hostPort) bool { return ep.Port != want.Admin }) {
				p.add("%s: skips ext_authz but goes to cluster %q, not to the extauthz admin (port %d): requests would reach it unchecked", rw, cname, want.Admin)
				continue
			}
			if c.GetType() == clusterv3.Cluster_STATIC {
				for _, ep := range eps {
					if isLoopback(ep.Host) {
						p.add("%s: the admin is not in the pod: cluster %q must name its Service, not %s", rw, cname, ep.Host)
					}
				}
			}
			tc, err := upstreamTLS(c)
			if err != nil {
				p.add("%s: cluster %q: %v", rw, cname, err)
			}
			for _, ep := range eps {
				if !slices.Contains(f.AdminHosts, ep) {
					f.AdminHosts = append(f.AdminHosts, ep)
				}
				if f.AdminTLS == nil {
					f.AdminTLS = map[hostPort]*tlsv3.UpstreamTlsContext{}
				}
				f.AdminTLS[ep] = tc
			}
			m := r.GetMatch()
			adminMatches = append(adminMatches, m.GetPath()+m.GetPrefix()+m.GetPathSeparatedPrefix()+m.GetSafeRegex().GetRegex())
		}
		if n := len(routes); n == 0 || routes[n-1].GetMatch().GetPrefix() != "/" ||
			authzDisabled(vw, routes[n-1].GetTypedPerFilterConfig(), names, azName, p) {
			p.add("%s: the last route must be the catch-all prefix \"/\" under ext_authz", vw)
		}
	}
	if !healthBypass {
		p.add("%s: no route for %s with ext_authz disabled (ExtAuthzPerRoute{disabled: true} keyed by the filter's name %q)", where, healthPath, azName)
	}
	if want.Admin != 0 {
		all := strings.Join(adminMatches, " ")
		for _, path := range []string{"/api/v1/api-keys", "/api/v1/projects"} {
			if !strings.Contains(all, path) {
				p.add("%s: no route sends %s key management to the extauthz admin", where, path)
			}
		}
	}
}

// checkEnvoyContainer checks an Envoy container: its config (from the ConfigMap it mounts)
// against the extauthz replica of the same pod, its ports and where it sends key management.
func (k *checker) checkEnvoyContainer(w *workload, c *corev1.Container, vols map[string]*corev1.Volume) {
	where := w.obj.String() + " container " + c.Name
	if _, tag := imageRepo(c.Image); !strings.HasPrefix(tag, envoyTag) {
		k.p.add("%s: image %s, want %s%s (the version envoy.yaml is written for)", where, c.Image, envoyImage, envoyTag+"x")
	}
	args := append(slices.Clone(c.Command), c.Args...)
	cfgPath := ""
	for i, a := range args {
		switch {
		case (a == "-c" || a == "--config-path") && i+1 < len(args):
			cfgPath = args[i+1]
		case strings.HasPrefix(a, "--config-path="):
			cfgPath = strings.TrimPrefix(a, "--config-path=")
		}
	}
	if cfgPath == "" {
		k.p.add("%s: no --config-path", where)
		return
	}
	m, v, rel := mountFor(c, vols, cfgPath)
	if m == nil || v == nil || v.ConfigMap == nil {
		k.p.add("%s: --config-path %s is not in a mounted ConfigMap", where, cfgPath)
		return
	}
	key, _ := projectedKey(v.ConfigMap.Items, rel)
	cm := k.configMap(w.obj.Namespace, v.ConfigMap.Name)
	if cm == nil || cm.Data[key] == "" {
		k.p.add("%s: --config-path %s: ConfigMap %s has no key %q", where, cfgPath, v.ConfigMap.Name, key)
		return
	}
	b, err := loadBootstrap([]byte(cm.Data[key]))
	if err != nil {
		k.p.add("%s: ConfigMap %s key %s: %v", where, cm.Name, key, err)
		return
	}

	// The extauthz replica in the same pod is what Envoy must reach.
	want := envoyWant{Admin: uint32(k.want.Admin)}
	for _, e := range k.ext[w] {
		if e.role == "sidecar" || e.role == "standalone" {
			want.GRPC, want.HTTP = uint32(e.grpc), uint32(e.http)
		}
	}
	if want.GRPC == 0 && want.HTTP == 0 {
		k.p.add("%s: no extauthz sidecar in the pod for ext_authz to call", where)
	}
	facts, probs := checkEnvoy(b, want)
	for _, pr := range probs {
		k.p.add("%s: %s: %s", where, cm.Name, pr)
	}
	for _, lp := range facts.ListenerPorts {
		if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return uint32(cp.ContainerPort) == lp }) {
			k.p.add("%s: Envoy listens on %d, which the container does not declare", where, lp)
		}
	}
	for _, hp := range facts.AdminHosts {
		k.checkEdge(where+" cluster to "+hp.Host, hp.Host, intstr.FromInt32(int32(hp.Port)), w.obj.Namespace, w.tmpl.Labels, w.obj.Namespace,
			"the admin port of an extauthz admin", func(t target) bool {
				if t.ext == nil || (t.ext.role != "admin" && t.ext.role != "standalone") || t.port != t.ext.admin {
					return false
				}
				k.checkEnvoyAdminTLS(where+" cluster to "+hp.Host, c, vols, t, facts.AdminTLS[hp])
				return true
			})
	}
}

// upstreamTLS returns the UpstreamTlsContext of a cluster's transport socket, nil for none.
func upstreamTLS(c *clusterv3.Cluster) (*tlsv3.UpstreamTlsContext, error) {
	ts := c.GetTransportSocket()
	if ts == nil {
		return nil, nil
	}
	tc := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(tc); err != nil {
		return nil, fmt.Errorf("transport socket %q is not an UpstreamTlsContext: %w", ts.GetName(), err)
	}
	return tc, nil
}

// checkEnvoyAdminTLS: Envoy speaks TLS to the admin exactly when the admin serves it, and then
// verifies it as the sidecars do: the CA file is ca.crt of the Secret the admin's certificate
// comes from, mounted in the Envoy container, and the SNI and a DNS SAN matcher both name one of
// the dnsNames of the admin's Certificate.
func (k *checker) checkEnvoyAdminTLS(where string, c *corev1.Container, vols map[string]*corev1.Volume, t target, tc *tlsv3.UpstreamTlsContext) {
	_, servesTLS := t.ext.flags["tls-cert-file"]
	switch {
	case servesTLS && tc == nil:
		k.p.add("%s: the admin serves TLS, but the cluster has no UpstreamTlsContext", where)
		return
	case !servesTLS && tc != nil:
		k.p.add("%s: the cluster speaks TLS, but the admin has no --tls-cert-file", where)
		return
	case !servesTLS:
		return
	}
	secretName := ""
	for i := range t.w.spec().Containers {
		ac := &t.w.spec().Containers[i]
		if !isExtauthz(ac) {
			continue
		}
		avols := map[string]*corev1.Volume{}
		for j := range t.w.spec().Volumes {
			avols[t.w.spec().Volumes[j].Name] = &t.w.spec().Volumes[j]
		}
		if _, v, _ := mountFor(ac, avols, t.ext.flags["tls-cert-file"]); v != nil && v.Secret != nil {
			secretName = v.Secret.SecretName
		}
	}
	vc := tc.GetCommonTlsContext().GetValidationContext()
	ca := vc.GetTrustedCa().GetFilename()
	if ca == "" {
		k.p.add("%s: the UpstreamTlsContext has no validation_context.trusted_ca file: Envoy would accept any certificate", where)
		return
	}
	m, v, rel := mountFor(c, vols, ca)
	if m == nil || v == nil || v.Secret == nil {
		k.p.add("%s: trusted_ca %s is not in a mounted Secret volume", where, ca)
	} else if key, _ := projectedKey(v.Secret.Items, rel); v.Secret.SecretName != secretName || key != "ca.crt" {
		k.p.add("%s: trusted_ca %s is Secret %s key %q, want key \"ca.crt\" of %s, the admin's certificate Secret", where, ca, v.Secret.SecretName, key, secretName)
	}
	cert := k.certificateFor(t.w.obj.Namespace, secretName)
	if cert == nil {
		k.p.add("%s: no cert-manager Certificate writes Secret %s, the admin's --tls-cert-file", where, secretName)
		return
	}
	if sni := tc.GetSni(); !slices.Contains(cert.Spec.DNSNames, sni) {
		k.p.add("%s: sni %q is not one of the admin Certificate's dnsNames %v", where, sni, cert.Spec.DNSNames)
	}
	named := false
	for _, san := range vc.GetMatchTypedSubjectAltNames() {
		if san.GetSanType() == tlsv3.SubjectAltNameMatcher_DNS && slices.Contains(cert.Spec.DNSNames, san.GetMatcher().GetExact()) {
			named = true
		}
	}
	if !named {
		k.p.add("%s: no match_typed_subject_alt_names DNS matcher names one of the admin Certificate's dnsNames %v: any certificate of the CA would be accepted", where, cert.Spec.DNSNames)
	}
}

// envoyPorts converts the binary's ports for checkEnvoy.
func envoyPorts(pt ports) envoyWant {
	return envoyWant{GRPC: uint32(pt.GRPC), HTTP: uint32(pt.HTTP), Admin: uint32(pt.Admin)}
}
