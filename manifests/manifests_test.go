package manifests

import (
	"bytes"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/admin"
	"github.com/extauthz/extauthz/authz/envoy"
	"github.com/extauthz/extauthz/authz/forwardauth"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	rootEnvoyYAML    = "../envoy.yaml"
	copyEnvoyYAML    = "envoy/envoy.yaml"
	httpEnvoyYAML    = "../examples/envoy-http.yaml"
	policyCopy       = "base/policy.yaml"
	nexgentPolicy    = "../examples/policies/nexgent.yaml"
	traefikFileYAML  = "../examples/traefik/dynamic.yaml"
	manifestsDirNote = "cp envoy.yaml manifests/envoy/envoy.yaml"
)

func portOf(t testing.TB, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		t.Fatalf("address %q: bad port", addr)
	}
	return int32(n)
}

// codePorts are the ports the binary listens on by default, from the code itself.
func codePorts(t testing.TB) ports {
	return ports{
		GRPC:  portOf(t, envoy.DefaultGRPCAddr),
		HTTP:  portOf(t, forwardauth.DefaultHTTPAddr),
		Admin: portOf(t, admin.DefaultAddr),
	}
}

func reportProblems(t *testing.T, what string, probs []string) {
	t.Helper()
	for _, p := range probs {
		t.Errorf("%s: %s", what, p)
	}
}

func TestKustomizationsFitTogether(t *testing.T) {
	want := codePorts(t)
	for _, name := range Kustomizations {
		t.Run(name, func(t *testing.T) {
			set := rendered(t, name)
			reportProblems(t, name, checkManifests(set, want))
		})
	}
}

// TestKustomizationsContent pins what each kustomization is for, so that a checker that finds
// nothing to check does not pass silently.
func TestKustomizationsContent(t *testing.T) {
	count := func(set *objectSet, kind string) int { return len(set.byKind(kind)) }
	roles := func(set *objectSet) map[string]int {
		m := map[string]int{}
		for _, w := range workloadsOf(set) {
			for _, c := range w.spec().Containers {
				switch {
				case isExtauthz(&c) && len(c.Args) > 0:
					m[c.Args[0]]++
				case isEnvoy(&c):
					m["envoy"]++
				}
			}
		}
		return m
	}
	base := rendered(t, "base")
	if got := roles(base); !reflect.DeepEqual(got, map[string]int{"admin": 1}) {
		t.Errorf("base: extauthz containers %v, want one admin", got)
	}
	for _, kind := range []string{"StatefulSet", "Service", "ServiceAccount", "NetworkPolicy", "PodDisruptionBudget", "ConfigMap"} {
		if count(base, kind) == 0 {
			t.Errorf("base: no %s", kind)
		}
	}
	if count(base, "Secret") != 0 {
		t.Errorf("base: renders a Secret")
	}

	env := rendered(t, "envoy")
	if got := roles(env); got["admin"] != 1 || got["sidecar"] != 1 || got["envoy"] != 1 {
		t.Errorf("envoy: containers %v, want the admin, one sidecar and one Envoy", got)
	}
	if env.get("ConfigMap", "extauthz", "envoy-config") == nil {
		t.Errorf("envoy: no ConfigMap envoy-config")
	}

	tr := rendered(t, "traefik")
	if got := roles(tr); got["admin"] != 1 || got["sidecar"] != 1 || got["envoy"] != 0 {
		t.Errorf("traefik: containers %v, want the admin and the extauthz-auth replicas", got)
	}
	mw := tr.get("Middleware", "extauthz", "apikey-auth")
	if mw == nil || mw.Obj.(*middleware).Spec.ForwardAuth == nil {
		t.Fatalf("traefik: no forwardAuth Middleware apikey-auth")
	}
	if got, want := mw.Obj.(*middleware).Spec.ForwardAuth.Address, "http://extauthz-auth.extauthz.svc:9192/auth"; got != want {
		t.Errorf("traefik: forwardAuth address %q, want %q", got, want)
	}
	if count(tr, "IngressRoute") != 1 {
		t.Errorf("traefik: want one IngressRoute")
	}
	if w := tr.get("Deployment", "extauthz", "extauthz-auth"); w == nil || *w.Obj.(*appsv1.Deployment).Spec.Replicas < 2 {
		t.Errorf("traefik: want Deployment extauthz-auth with at least 2 replicas")
	}

	// The HA admin: three voters beside the Envoy layout, their headless Services, and sidecars
	// following the ready members' headless Service (any member serves the replication feed).
	ha := rendered(t, "ha")
	if got := roles(ha); got["admin"] != 1 || got["sidecar"] != 1 || got["envoy"] != 1 {
		t.Errorf("ha: containers %v, want the admin, one sidecar and one Envoy", got)
	}
	if sts := ha.get("StatefulSet", "extauthz", "extauthz-admin").Obj.(*appsv1.StatefulSet); *sts.Spec.Replicas != 3 || sts.Spec.ServiceName != "extauthz-admin-raft" {
		t.Errorf("ha: admin StatefulSet of %d replicas governed by %s; want 3 and extauthz-admin-raft", *sts.Spec.Replicas, sts.Spec.ServiceName)
	}
	if _, c := container(t, ha, "Deployment", "app", "extauthz"); !slices.Contains(c.Args, "--admin-url=http://extauthz-admin-members:8181") {
		t.Errorf("ha: sidecar args %v do not follow the admin members' Service", c.Args)
	}
	if svc := ha.get("Service", "extauthz", "extauthz-admin-members"); svc == nil || svc.Obj.(*corev1.Service).Spec.ClusterIP != "None" || svc.Obj.(*corev1.Service).Spec.PublishNotReadyAddresses {
		t.Errorf("ha: want the headless Service extauthz-admin-members of the ready admins")
	}

	// The TLS overlays: the layout's containers, and the admin's Certificate.
	for _, name := range []string{"envoy-tls", "traefik-tls"} {
		set := rendered(t, name)
		if got, base := roles(set), roles(rendered(t, strings.TrimSuffix(name, "-tls"))); !reflect.DeepEqual(got, base) {
			t.Errorf("%s: containers %v, want those of its layout %v", name, got, base)
		}
		if set.get("Certificate", "extauthz", "extauthz-admin") == nil {
			t.Errorf("%s: no Certificate extauthz-admin", name)
		}
	}
}

// TestEnvoyConfigMapIsRootEnvoyYAML: kustomize cannot read ../../envoy.yaml (load restrictor), so
// the overlay keeps a copy; it must not drift.
func TestEnvoyConfigMapIsRootEnvoyYAML(t *testing.T) {
	root, err := os.ReadFile(rootEnvoyYAML)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := os.ReadFile(copyEnvoyYAML)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root, cp) {
		t.Fatalf("manifests/%s differs from envoy.yaml: run `%s`", copyEnvoyYAML, manifestsDirNote)
	}
	cm := rendered(t, "envoy").get("ConfigMap", "extauthz", "envoy-config")
	if cm == nil || cm.Obj.(*corev1.ConfigMap).Data["envoy.yaml"] != string(root) {
		t.Fatalf("ConfigMap envoy-config does not hold envoy.yaml as it is")
	}
}

// TestPolicyCopy keeps the deployed policy equal (as YAML data) to the shipped Nexgent example.
func TestPolicyCopy(t *testing.T) {
	ex, err := os.ReadFile(nexgentPolicy)
	if os.IsNotExist(err) {
		t.Skipf("%s does not exist yet", nexgentPolicy)
	}
	if err != nil {
		t.Fatal(err)
	}
	cp, err := os.ReadFile(policyCopy)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := yaml.Unmarshal(ex, &a); err != nil {
		t.Fatalf("%s: %v", nexgentPolicy, err)
	}
	if err := yaml.Unmarshal(cp, &b); err != nil {
		t.Fatalf("%s: %v", policyCopy, err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("manifests/%s differs from examples/policies/nexgent.yaml: copy it over", policyCopy)
	}
}

func TestRender(t *testing.T) {
	y, err := Render("envoy")
	if err != nil {
		t.Fatal(err)
	}
	set := rendered(t, "envoy")
	if docs := bytes.Count(y, []byte("\n---\n")) + 1; docs != len(set.Objs) {
		t.Fatalf("Render gave %d documents, RenderObjects %d objects", docs, len(set.Objs))
	}
	// kubectl's legacy order: what a workload needs comes before it, so the output applies as it is.
	seenWorkload := false
	for _, o := range set.Objs {
		switch o.Kind {
		case "Deployment", "StatefulSet":
			seenWorkload = true
		case "ConfigMap", "ServiceAccount":
			if seenWorkload {
				t.Fatalf("rendered envoy overlay lists %s after a workload", o)
			}
		}
	}
}

// The drift tests below change one thing in a correct rendering, in memory, and expect the
// checker to name it.

func container(t *testing.T, set *objectSet, kind, name, cname string) (*corev1.PodSpec, *corev1.Container) {
	t.Helper()
	o := set.get(kind, "extauthz", name)
	if o == nil {
		t.Fatalf("%s %s not rendered", kind, name)
	}
	var spec *corev1.PodSpec
	switch v := o.Obj.(type) {
	case *appsv1.Deployment:
		spec = &v.Spec.Template.Spec
	case *appsv1.StatefulSet:
		spec = &v.Spec.Template.Spec
	}
	for i := range spec.Containers {
		if spec.Containers[i].Name == cname {
			return spec, &spec.Containers[i]
		}
	}
	t.Fatalf("%s %s has no container %s", kind, name, cname)
	return nil, nil
}

func replaceArg(t *testing.T, c *corev1.Container, old, new string) {
	t.Helper()
	for i, a := range c.Args {
		if a == old {
			c.Args[i] = new
			return
		}
	}
	t.Fatalf("container %s has no argument %q", c.Name, old)
}

func TestManifestDriftIsReported(t *testing.T) {
	want := codePorts(t)
	cases := []struct {
		name    string
		overlay string
		ports   func(ports) ports
		mutate  func(t *testing.T, set *objectSet)
		expect  []string // substrings of one reported problem
	}{
		{
			name: "code moves the gRPC port", overlay: "envoy",
			ports:  func(p ports) ports { p.GRPC = 7000; return p },
			expect: []string{"container extauthz", "gRPC probe on port 9191", "7000"},
		},
		{
			name: "code moves the gRPC port (Envoy cluster)", overlay: "envoy",
			ports:  func(p ports) ports { p.GRPC = 7000; return p },
			expect: []string{"cluster extauthz", "want 127.0.0.1:7000"},
		},
		{
			name: "code moves the HTTP port", overlay: "traefik",
			ports:  func(p ports) ports { p.HTTP = 7001; return p },
			expect: []string{"readinessProbe", "7001"},
		},
		{
			name: "code moves the admin port", overlay: "base",
			ports:  func(p ports) ports { p.Admin = 7002; return p },
			expect: []string{"StatefulSet/extauthz-admin", "7002"},
		},
		{
			name: "code moves the admin port (Envoy admin route)", overlay: "envoy",
			ports:  func(p ports) ports { p.Admin = 7002; return p },
			expect: []string{"skips ext_authz", "port 7002"},
		},
		{
			name: "sidecar admin URL on the wrong port", overlay: "envoy",
			mutate: func(t *testing.T, s *objectSet) {
				_, c := container(t, s, "Deployment", "app", "extauthz")
				replaceArg(t, c, "--admin-url=http://extauthz-admin:8181", "--admin-url=http://extauthz-admin:9999")
			},
			expect: []string{"--admin-url", "has no port 9999"},
		},
		{
			name: "sidecar admin URL names a missing Service", overlay: "traefik",
			mutate: func(t *testing.T, s *objectSet) {
				_, c := container(t, s, "Deployment", "extauthz-auth", "extauthz")
				replaceArg(t, c, "--admin-url=http://extauthz-admin:8181", "--admin-url=http://admin:8181")
			},
			expect: []string{"--admin-url", "no Service admin"},
		},
		{
			name: "sidecar admin URL list with a member that names a missing Service", overlay: "traefik",
			mutate: func(t *testing.T, s *objectSet) {
				_, c := container(t, s, "Deployment", "extauthz-auth", "extauthz")
				replaceArg(t, c, "--admin-url=http://extauthz-admin:8181", "--admin-url=http://extauthz-admin:8181,http://admin:8181")
			},
			expect: []string{"--admin-url", "no Service admin"},
		},
		{
			name: "sidecar overrides its gRPC address without the probe following", overlay: "envoy",
			mutate: func(t *testing.T, s *objectSet) {
				_, c := container(t, s, "Deployment", "app", "extauthz")
				c.Args = append(c.Args, "--grpc-addr=:7100")
			},
			expect: []string{"gRPC probe on port 9191", "7100"},
		},
		{
			name: "HA admin PDB lets a drain break the quorum", overlay: "ha",
			mutate: func(t *testing.T, s *objectSet) {
				one := intstr.FromInt32(1)
				s.get("PodDisruptionBudget", "extauthz", "extauthz-admin").Obj.(*policyv1.PodDisruptionBudget).Spec.MinAvailable = &one
			},
			expect: []string{"minAvailable 2 keeps a quorum"},
		},
		{
			name: "HA admin raft port open to the replicas", overlay: "ha",
			mutate: func(t *testing.T, s *objectSet) {
				np := s.get("NetworkPolicy", "extauthz", "extauthz-admin").Obj.(*networkingv1.NetworkPolicy)
				np.Spec.Ingress[0].Ports = append(np.Spec.Ingress[0].Ports, np.Spec.Ingress[len(np.Spec.Ingress)-1].Ports[1])
			},
			expect: []string{"raft port 8300 is open to pods map[extauthz.io/replica:true]"},
		},
		{
			name: "HA admin governed by a Service that is not headless", overlay: "ha",
			mutate: func(t *testing.T, s *objectSet) {
				s.get("StatefulSet", "extauthz", "extauthz-admin").Obj.(*appsv1.StatefulSet).Spec.ServiceName = "extauthz-admin"
			},
			expect: []string{"governing Service extauthz-admin must be headless"},
		},
		{
			name: "HA admin peer named outside the StatefulSet", overlay: "ha",
			mutate: func(t *testing.T, s *objectSet) {
				_, c := container(t, s, "StatefulSet", "extauthz-admin", "admin")
				for i, a := range c.Args {
					if strings.HasPrefix(a, "--raft-peers=") {
						c.Args[i] = strings.Replace(a, "extauthz-admin-2=extauthz-admin-2.", "extauthz-admin-2=admin-2.", 1)
					}
				}
			},
			expect: []string{"raft peer 2 is", "the pod, under the governing Service"},
		},
		{
			name: "admin Service targets a missing port name", overlay: "base",
			mutate: func(t *testing.T, s *objectSet) {
				svc := s.get("Service", "", "extauthz-admin").Obj.(*corev1.Service)
				svc.Spec.Ports[0].TargetPort = intstr.FromString("nope")
			},
			expect: []string{"Service/extauthz-admin", "targets nope"},
		},
		{
			name: "Service selector matches nothing", overlay: "envoy",
			mutate: func(t *testing.T, s *objectSet) {
				s.get("Service", "extauthz", "app").Obj.(*corev1.Service).Spec.Selector["app.kubernetes.io/name"] = "ppa"
			},
			expect: []string{"Service/extauthz/app", "matches no workload"},
		},
		{
			name: "writable root filesystem", overlay: "envoy",
			mutate: func(t *testing.T, s *objectSet) {
				_, c := container(t, s, "Deployment", "app", "envoy")
				f := false
				c.SecurityContext.ReadOnlyRootFilesystem = &f
			},
			expect: []string{"container envoy", "readOnlyRootFilesystem"},
		},
		{
			name: "runs as root", overlay: "traefik",
			mutate: func(t *testing.T, s *objectSet) {
				spec, c := container(t, s, "Deployment", "echo", "echo")
				c.SecurityContext.RunAsNonRoot, c.SecurityContext.RunAsUser = nil, nil
				spec.SecurityContext.RunAsNonRoot, spec.SecurityContext.RunAsUser = nil, nil
			},
			expect: []string{"container echo", "runAsNonRoot"},
		},
		{
			name: "no memory limit", overlay: "base",
			mutate: func(t *testing.T, s *objectSet) {
				_, c := container(t, withNamespace(s), "StatefulSet", "extauthz-admin", "admin")
				delete(c.Resources.Limits, corev1.ResourceMemory)
			},
			expect: []string{"memory request and limit"},
		},
		{
			name: "policy ConfigMap renamed", overlay: "traefik",
			mutate: func(t *testing.T, s *objectSet) {
				s.get("ConfigMap", "extauthz", "extauthz-policy").Name = "policy"
			},
			expect: []string{"ConfigMap \"extauthz-policy\" is not rendered"},
		},
		{
			name: "unknown Secret", overlay: "base",
			mutate: func(t *testing.T, s *objectSet) {
				spec, _ := container(t, withNamespace(s), "StatefulSet", "extauthz-admin", "admin")
				for i := range spec.Volumes {
					if spec.Volumes[i].Secret != nil {
						spec.Volumes[i].Secret.SecretName = "tokens"
					}
				}
			},
			expect: []string{"Secret \"tokens\" is not one of the documented external secrets"},
		},
		{
			name: "Secret volume with the default mode 0644", overlay: "base",
			mutate: func(t *testing.T, s *objectSet) {
				spec, _ := container(t, withNamespace(s), "StatefulSet", "extauthz-admin", "admin")
				for i := range spec.Volumes {
					if spec.Volumes[i].Secret != nil {
						spec.Volumes[i].Secret.DefaultMode = nil
					}
				}
			},
			expect: []string{"volume tokens", "set defaultMode: 0440"},
		},
		{
			name: "sidecar follows a TLS admin over plain HTTP", overlay: "traefik-tls",
			mutate: func(t *testing.T, s *objectSet) {
				_, c := container(t, s, "Deployment", "extauthz-auth", "extauthz")
				replaceArg(t, c, "--admin-url=https://extauthz-admin:8181", "--admin-url=http://extauthz-admin:8181")
			},
			expect: []string{"is plain http://, but the admin serves TLS"},
		},
		{
			name: "sidecar uses https to a plain admin", overlay: "traefik",
			mutate: func(t *testing.T, s *objectSet) {
				_, c := container(t, s, "Deployment", "extauthz-auth", "extauthz")
				replaceArg(t, c, "--admin-url=http://extauthz-admin:8181", "--admin-url=https://extauthz-admin:8181")
			},
			expect: []string{"is https://, but the admin has no --tls-cert-file"},
		},
		{
			name: "admin certificate without the name sidecars dial", overlay: "traefik-tls",
			mutate: func(t *testing.T, s *objectSet) {
				c := s.get("Certificate", "extauthz", "extauthz-admin").Obj.(*certificate)
				c.Spec.DNSNames = []string{"admin.example.com"}
			},
			expect: []string{"does not name \"extauthz-admin\""},
		},
		{
			name: "Envoy to a TLS admin over plain HTTP", overlay: "envoy-tls",
			mutate: func(t *testing.T, s *objectSet) {
				editEnvoyConfig(t, s, func(cfg map[string]any) { delete(adminCluster(t, cfg), "transport_socket") })
			},
			expect: []string{"cluster to extauthz-admin", "the admin serves TLS, but the cluster has no UpstreamTlsContext"},
		},
		{
			name: "Envoy SNI not on the admin certificate", overlay: "envoy-tls",
			mutate: func(t *testing.T, s *objectSet) {
				editEnvoyConfig(t, s, func(cfg map[string]any) { adminTLS(t, cfg)["sni"] = "admin.example.com" })
			},
			expect: []string{"sni \"admin.example.com\" is not one of the admin Certificate's dnsNames"},
		},
		{
			name: "Envoy trusts any certificate of the CA", overlay: "envoy-tls",
			mutate: func(t *testing.T, s *objectSet) {
				editEnvoyConfig(t, s, func(cfg map[string]any) {
					delete(adminTLS(t, cfg)["common_tls_context"].(map[string]any)["validation_context"].(map[string]any), "match_typed_subject_alt_names")
				})
			},
			expect: []string{"no match_typed_subject_alt_names DNS matcher"},
		},
		{
			name: "Envoy's CA file not mounted", overlay: "envoy-tls",
			mutate: func(t *testing.T, s *objectSet) {
				_, c := container(t, s, "Deployment", "app", "envoy")
				c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "admin-ca" })
			},
			expect: []string{"trusted_ca /etc/extauthz/admin-ca/ca.crt is not in a mounted Secret volume"},
		},
		{
			name: "Envoy speaks TLS to a plain admin", overlay: "envoy-tls",
			mutate: func(t *testing.T, s *objectSet) {
				_, c := container(t, s, "StatefulSet", "extauthz-admin", "admin")
				c.Args = slices.DeleteFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--tls-") })
			},
			expect: []string{"the cluster speaks TLS, but the admin has no --tls-cert-file"},
		},
		{
			name: "sidecar sees the admin token", overlay: "envoy",
			mutate: func(t *testing.T, s *objectSet) {
				spec, _ := container(t, s, "Deployment", "app", "extauthz")
				for i := range spec.Volumes {
					if spec.Volumes[i].Secret != nil {
						spec.Volumes[i].Secret.Items = nil
					}
				}
			},
			expect: []string{"admin-token"},
		},
		{
			name: "token file points at the wrong key", overlay: "base",
			mutate: func(t *testing.T, s *objectSet) {
				_, c := container(t, withNamespace(s), "StatefulSet", "extauthz-admin", "admin")
				replaceArg(t, c, "--admin-token-file=/etc/extauthz/secrets/admin-token", "--admin-token-file=/etc/extauthz/secrets/replication-token")
			},
			expect: []string{"--admin-token-file", "want key \"admin-token\""},
		},
		{
			name: "admin store on an emptyDir", overlay: "base",
			mutate: func(t *testing.T, s *objectSet) {
				sts := s.get("StatefulSet", "", "extauthz-admin").Obj.(*appsv1.StatefulSet)
				sts.Spec.VolumeClaimTemplates = nil
				sts.Spec.Template.Spec.Volumes = append(sts.Spec.Template.Spec.Volumes, corev1.Volume{
					Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
				})
			},
			expect: []string{"needs a PersistentVolumeClaim"},
		},
		{
			name: "admin scaled out", overlay: "base",
			mutate: func(t *testing.T, s *objectSet) {
				n := int32(2)
				s.get("StatefulSet", "", "extauthz-admin").Obj.(*appsv1.StatefulSet).Spec.Replicas = &n
			},
			expect: []string{"exactly 1"},
		},
		{
			name: "a Secret is committed", overlay: "base",
			mutate: func(t *testing.T, s *objectSet) {
				s.Objs = append(s.Objs, &object{APIVersion: "v1", Kind: "Secret", Name: "extauthz-tokens",
					Labels: map[string]string{partOfLabel: partOfValue}, Obj: &corev1.Secret{}})
			},
			expect: []string{"Secret/extauthz-tokens", "never committed"},
		},
		{
			name: "admin NetworkPolicy shuts the replicas out", overlay: "envoy",
			mutate: func(t *testing.T, s *objectSet) {
				np := s.get("NetworkPolicy", "extauthz", "extauthz-admin").Obj.(*networkingv1.NetworkPolicy)
				np.Spec.Ingress[0].From[0].PodSelector.MatchLabels = map[string]string{"extauthz.io/replica": "false"}
			},
			expect: []string{"--admin-url", "NetworkPolicy extauthz-admin does not admit it"},
		},
		{
			name: "Envoy config drifts from the sidecar's port", overlay: "envoy",
			mutate: func(t *testing.T, s *objectSet) {
				cm := s.get("ConfigMap", "extauthz", "envoy-config").Obj.(*corev1.ConfigMap)
				cm.Data["envoy.yaml"] = strings.Replace(cm.Data["envoy.yaml"], "port_value: 9191", "port_value: 9999", 1)
			},
			expect: []string{"envoy-config", "127.0.0.1:9999", "want 127.0.0.1:9191"},
		},
		{
			name: "Envoy config sends key management to a missing Service", overlay: "envoy",
			mutate: func(t *testing.T, s *objectSet) {
				cm := s.get("ConfigMap", "extauthz", "envoy-config").Obj.(*corev1.ConfigMap)
				cm.Data["envoy.yaml"] = strings.Replace(cm.Data["envoy.yaml"], "address: extauthz-admin,", "address: admin,", 1)
			},
			expect: []string{"cluster to admin", "no Service admin"},
		},
		{
			name: "forwardAuth address port", overlay: "traefik",
			mutate: func(t *testing.T, s *objectSet) {
				s.get("Middleware", "extauthz", "apikey-auth").Obj.(*middleware).Spec.ForwardAuth.Address = "http://extauthz-auth.extauthz.svc:9191/auth"
			},
			expect: []string{"forwardAuth address", "has no port 9191"},
		},
		{
			name: "forwardAuth address without namespace", overlay: "traefik",
			mutate: func(t *testing.T, s *objectSet) {
				s.get("Middleware", "extauthz", "apikey-auth").Obj.(*middleware).Spec.ForwardAuth.Address = "http://extauthz-auth:9192/auth"
			},
			expect: []string{"forwardAuth address", "has no namespace"},
		},
		{
			name: "forwardAuth keeps the credential", overlay: "traefik",
			mutate: func(t *testing.T, s *objectSet) {
				fa := s.get("Middleware", "extauthz", "apikey-auth").Obj.(*middleware).Spec.ForwardAuth
				fa.AuthResponseHeadersRegex = strings.Replace(fa.AuthResponseHeadersRegex, "|authorization", "", 1)
			},
			expect: []string{"a client's Authorization reaches the backend"},
		},
		{
			name: "forwardAuth strips only the exact spellings", overlay: "traefik",
			mutate: func(t *testing.T, s *objectSet) {
				fa := s.get("Middleware", "extauthz", "apikey-auth").Obj.(*middleware).Spec.ForwardAuth
				fa.AuthResponseHeadersRegex = ""
				fa.AuthResponseHeaders = append(slices.Clone(identityHeaders), credentialHeaders...)
			},
			expect: []string{"a client's X-Auth-User_id reaches the backend"},
		},
		{
			name: "forwardAuth filters the client's headers", overlay: "traefik",
			mutate: func(t *testing.T, s *objectSet) {
				fa := s.get("Middleware", "extauthz", "apikey-auth").Obj.(*middleware).Spec.ForwardAuth
				fa.AuthRequestHeaders = []string{"X-Api-Key", "Authorization", "X-Http-Method-Override"}
			},
			expect: []string{"authRequestHeaders is set"},
		},
		{
			name: "replica behind Traefik in auto mode", overlay: "traefik",
			mutate: func(t *testing.T, s *objectSet) {
				d := s.get("Deployment", "extauthz", "extauthz-auth").Obj.(*appsv1.Deployment)
				args := d.Spec.Template.Spec.Containers[0].Args
				for i, a := range args {
					if strings.HasPrefix(a, "--forward-headers=") {
						args[i] = "--forward-headers=nginx"
					}
				}
			},
			expect: []string{"--forward-headers is \"nginx\", not traefik"},
		},
		{
			name: "IngressRoute reaches the app unchecked", overlay: "traefik",
			mutate: func(t *testing.T, s *objectSet) {
				ir := s.get("IngressRoute", "extauthz", "api").Obj.(*ingressRoute)
				ir.Spec.Routes[len(ir.Spec.Routes)-1].Middlewares = nil
			},
			expect: []string{"without a forwardAuth middleware"},
		},
		{
			name: "IngressRoute to a missing Service", overlay: "traefik",
			mutate: func(t *testing.T, s *objectSet) {
				ir := s.get("IngressRoute", "extauthz", "api").Obj.(*ingressRoute)
				ir.Spec.Routes[0].Services[0].Name = "admin"
			},
			expect: []string{"no Service admin"},
		},
		{
			name: "Traefik shut out of the admin", overlay: "traefik",
			mutate: func(t *testing.T, s *objectSet) {
				np := s.get("NetworkPolicy", "extauthz", "extauthz-admin").Obj.(*networkingv1.NetworkPolicy)
				np.Spec.Ingress = np.Spec.Ingress[:1]
			},
			expect: []string{"IngressRoute", "NetworkPolicy extauthz-admin does not admit it"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := want
			if tc.ports != nil {
				p = tc.ports(p)
			}
			set := rendered(t, tc.overlay)
			if tc.mutate != nil {
				tc.mutate(t, set)
			}
			got := checkManifests(set, p)
			if !problemsContain(got, tc.expect...) {
				t.Fatalf("no problem mentions %q; got:\n%s", tc.expect, strings.Join(got, "\n"))
			}
		})
	}
}

// withNamespace lets container() find base objects, which have no namespace, under "extauthz".
func withNamespace(s *objectSet) *objectSet {
	out := &objectSet{Dir: s.Dir}
	for _, o := range s.Objs {
		c := *o
		if c.Namespace == "" && c.Kind != "Namespace" {
			c.Namespace = "extauthz"
		}
		out.Objs = append(out.Objs, &c)
	}
	return out
}

// editEnvoyConfig changes the envoy.yaml of the ConfigMap envoy-config, as data.
func editEnvoyConfig(t *testing.T, s *objectSet, edit func(cfg map[string]any)) {
	t.Helper()
	cm := s.get("ConfigMap", "extauthz", "envoy-config").Obj.(*corev1.ConfigMap)
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["envoy.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["envoy.yaml"] = string(b)
}

// adminCluster is the extauthz_admin cluster of an Envoy config read as data.
func adminCluster(t *testing.T, cfg map[string]any) map[string]any {
	t.Helper()
	for _, c := range cfg["static_resources"].(map[string]any)["clusters"].([]any) {
		if c := c.(map[string]any); c["name"] == "extauthz_admin" {
			return c
		}
	}
	t.Fatal("no cluster extauthz_admin")
	return nil
}

// adminTLS is the UpstreamTlsContext of the extauthz_admin cluster, as data.
func adminTLS(t *testing.T, cfg map[string]any) map[string]any {
	t.Helper()
	ts, ok := adminCluster(t, cfg)["transport_socket"].(map[string]any)
	if !ok {
		t.Fatal("cluster extauthz_admin has no transport_socket")
	}
	return ts["typed_config"].(map[string]any)
}

// TestEnvoyTLSConfigIsRootEnvoyYAML: the envoy-tls overlay's envoy.yaml is the repository's
// envoy.yaml with only a TLS transport socket added to the admin cluster.
func TestEnvoyTLSConfigIsRootEnvoyYAML(t *testing.T) {
	var root, tls map[string]any
	if err := yaml.Unmarshal(loadFile(t, rootEnvoyYAML), &root); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(loadFile(t, "envoy-tls/envoy.yaml"), &tls); err != nil {
		t.Fatal(err)
	}
	if adminTLS(t, tls)["@type"] != "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext" {
		t.Fatal("envoy-tls/envoy.yaml: the admin cluster's transport socket is not an UpstreamTlsContext")
	}
	delete(adminCluster(t, tls), "transport_socket")
	if !reflect.DeepEqual(root, tls) {
		t.Fatal("manifests/envoy-tls/envoy.yaml differs from envoy.yaml by more than the admin cluster's transport_socket: make the same change there")
	}
	cm := rendered(t, "envoy-tls").get("ConfigMap", "extauthz", "envoy-config")
	if cm == nil || cm.Obj.(*corev1.ConfigMap).Data["envoy.yaml"] != string(loadFile(t, "envoy-tls/envoy.yaml")) {
		t.Fatal("envoy-tls: ConfigMap envoy-config does not hold envoy-tls/envoy.yaml")
	}
}
