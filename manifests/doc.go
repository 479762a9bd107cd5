// Package manifests holds the Kubernetes deployment of extauthz as a kustomize tree and renders
// it.
//
// Layout (apply with `kubectl apply -k manifests/<dir>`):
//
//   - base: the admin StatefulSet (store on a PVC, admin API and replication feed on :8181), its
//     Service, ServiceAccount, NetworkPolicy and PodDisruptionBudget, and the policy ConfigMap.
//   - envoy: base plus an example application pod with Envoy in front of it and an extauthz
//     sidecar (ext_authz gRPC), configured by the repository's envoy.yaml.
//   - traefik: base plus a pool of extauthz replicas behind the Service extauthz-auth, a
//     traefik.io/v1alpha1 forwardAuth Middleware and an IngressRoute that uses it.
//   - tls: a kustomize Component serving TLS on the admin port from a cert-manager Certificate.
//   - envoy-tls, traefik-tls: the two layouts with the tls component, their sidecars and proxy
//     reaching the admin over verified https (envoy-tls carries its own copy of envoy.yaml with
//     the admin cluster's UpstreamTlsContext).
//
// The package's tests render every kustomization with the kustomize Go API, decode each object
// strictly into its Kubernetes type, check that the objects fit together (selectors, ports,
// probes, ConfigMap and Secret references, security contexts, the admin URL of the replicas, the
// Traefik address) and check envoy.yaml and examples/envoy-http.yaml against go-control-plane's
// Bootstrap type. Ports are compared with envoy.DefaultGRPCAddr, forwardauth.DefaultHTTPAddr and
// admin.DefaultAddr, so a change of a default in the code that is not made here fails the tests.
//
// The tests also cover the other ways extauthz is deployed: the Helm chart in charts/extauthz
// (rendered and linted with Helm's Go library, decoded and checked like the kustomize tree, and
// equal to it for the documented values), the Istio, Envoy Gateway and Gateway API examples
// (decoded into each project's Go types), and the Grafana dashboard and Prometheus alerts
// (queries parsed and checked against a running binary's /metrics, alerts evaluated on
// synthetic series).
//
// Render (and the command in ./render) prints what `kubectl kustomize` would, without kubectl.
package manifests
