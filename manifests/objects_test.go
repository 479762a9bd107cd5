package manifests

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8sjson "sigs.k8s.io/json"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

// object is one rendered Kubernetes object, decoded into its typed struct.
type object struct {
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	Labels     map[string]string
	Obj        any // *appsv1.Deployment, *corev1.Service, *middleware, ...
}

func (o *object) String() string {
	if o.Namespace == "" {
		return o.Kind + "/" + o.Name
	}
	return o.Kind + "/" + o.Namespace + "/" + o.Name
}

// objectSet is the output of one kustomization.
type objectSet struct {
	Dir  string
	Objs []*object
}

// byKind returns the objects of one kind in output order.
func (s *objectSet) byKind(kind string) []*object {
	var out []*object
	for _, o := range s.Objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// get returns the object of kind in namespace ns named name, or nil.
func (s *objectSet) get(kind, ns, name string) *object {
	for _, o := range s.Objs {
		if o.Kind == kind && o.Namespace == ns && o.Name == name {
			return o
		}
	}
	return nil
}

// Traefik CRDs (traefik.io/v1alpha1). No Go types are imported for them: these structs list the
// fields the manifests may use, and decoding rejects anything else.
type middleware struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            middlewareSpec    `json:"spec"`
}

type middlewareSpec struct {
	ForwardAuth *forwardAuth `json:"forwardAuth,omitempty"`
	StripPrefix *struct {
		Prefixes []string `json:"prefixes"`
	} `json:"stripPrefix,omitempty"`
}

type forwardAuth struct {
	Address                  string   `json:"address"`
	TrustForwardHeader       *bool    `json:"trustForwardHeader,omitempty"`
	AuthResponseHeaders      []string `json:"authResponseHeaders,omitempty"`
	AuthResponseHeadersRegex string   `json:"authResponseHeadersRegex,omitempty"`
	AuthRequestHeaders       []string `json:"authRequestHeaders,omitempty"`
	AddAuthCookiesToResponse []string `json:"addAuthCookiesToResponse,omitempty"`
	HeaderField              string   `json:"headerField,omitempty"`
	ForwardBody              *bool    `json:"forwardBody,omitempty"`
	MaxBodySize              *int64   `json:"maxBodySize,omitempty"`
	MaxResponseBodySize      *int64   `json:"maxResponseBodySize,omitempty"`
	PreserveLocationHeader   *bool    `json:"preserveLocationHeader,omitempty"`
	PreserveRequestMethod    *bool    `json:"preserveRequestMethod,omitempty"`
}

type ingressRoute struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            ingressRouteSpec  `json:"spec"`
}

type ingressRouteSpec struct {
	EntryPoints []string    `json:"entryPoints,omitempty"`
	Routes      []traefikRt `json:"routes"`
	TLS         *struct {
		SecretName   string `json:"secretName,omitempty"`
		CertResolver string `json:"certResolver,omitempty"`
	} `json:"tls,omitempty"`
}

type traefikRt struct {
	Kind        string       `json:"kind,omitempty"`
	Match       string       `json:"match"`
	Priority    int          `json:"priority,omitempty"`
	Syntax      string       `json:"syntax,omitempty"`
	Middlewares []traefikRef `json:"middlewares,omitempty"`
	Services    []traefikSvc `json:"services,omitempty"`
}

type traefikRef struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

type traefikSvc struct {
	Name      string             `json:"name"`
	Namespace string             `json:"namespace,omitempty"`
	Kind      string             `json:"kind,omitempty"`
	Port      intstr.IntOrString `json:"port,omitempty"`
	Scheme    string             `json:"scheme,omitempty"`
	Weight    *int               `json:"weight,omitempty"`
	// ServersTransport names the ServersTransport of an https service.
	ServersTransport string `json:"serversTransport,omitempty"`
}

// serversTransport is Traefik's traefik.io/v1alpha1 ServersTransport, the fields we use.
type serversTransport struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		ServerName string `json:"serverName,omitempty"`
		RootCAs    []struct {
			Secret    string `json:"secret,omitempty"`
			ConfigMap string `json:"configMap,omitempty"`
		} `json:"rootCAs,omitempty"`
		InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
	} `json:"spec"`
}

// certificate is cert-manager's cert-manager.io/v1 Certificate, the fields we use.
type certificate struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		SecretName  string   `json:"secretName"`
		IsCA        bool     `json:"isCA,omitempty"`
		CommonName  string   `json:"commonName,omitempty"`
		DNSNames    []string `json:"dnsNames,omitempty"`
		Duration    string   `json:"duration,omitempty"`
		RenewBefore string   `json:"renewBefore,omitempty"`
		Usages      []string `json:"usages,omitempty"`
		PrivateKey  *struct {
			Algorithm      string `json:"algorithm,omitempty"`
			Size           int    `json:"size,omitempty"`
			RotationPolicy string `json:"rotationPolicy,omitempty"`
		} `json:"privateKey,omitempty"`
		IssuerRef struct {
			Name string `json:"name"`
			Kind string `json:"kind,omitempty"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

// issuer is cert-manager's cert-manager.io/v1 Issuer, the two kinds we use.
type issuer struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		SelfSigned *struct{} `json:"selfSigned,omitempty"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca,omitempty"`
	} `json:"spec"`
}

// newTyped returns a pointer to the Go type an apiVersion/kind decodes into.
func newTyped(apiVersion, kind string) (any, bool) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, true
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "v1 Service":
		return &corev1.Service{}, true
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1 Secret":
		return &corev1.Secret{}, true
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, true
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, true
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, true
	case "networking.k8s.io/v1 Ingress":
		return &networkingv1.Ingress{}, true
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "traefik.io/v1alpha1 Middleware":
		return &middleware{}, true
	case "traefik.io/v1alpha1 IngressRoute":
		return &ingressRoute{}, true
	case "traefik.io/v1alpha1 ServersTransport":
		return &serversTransport{}, true
	case "cert-manager.io/v1 Certificate":
		return &certificate{}, true
	case "cert-manager.io/v1 Issuer":
		return &issuer{}, true
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, true
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &monitoringv1.PrometheusRule{}, true
	}
	return nil, false
}

// decodeStrict decodes JSON into v, failing on unknown fields, duplicate fields and fields whose
// name differs only in case (encoding/json alone would accept "containerport").
func decodeStrict(data []byte, v any) error {
	strict, err := k8sjson.UnmarshalStrict(data, v, k8sjson.DisallowDuplicateFields, k8sjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// decodeObjects decodes rendered objects strictly into their typed structs.
func decodeObjects(dir string, raws []json.RawMessage) (*objectSet, error) {
	set := &objectSet{Dir: dir}
	var errs []error
	for _, raw := range raws {
		var head struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        metav1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			errs = append(errs, err)
			continue
		}
		id := fmt.Sprintf("%s %s %s", head.APIVersion, head.Kind, head.Metadata.Name)
		typed, ok := newTyped(head.APIVersion, head.Kind)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no Go type to check this kind against", id))
			continue
		}
		if err := decodeStrict(raw, typed); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
			continue
		}
		set.Objs = append(set.Objs, &object{
			APIVersion: head.APIVersion,
			Kind:       head.Kind,
			Namespace:  head.Metadata.Namespace,
			Name:       head.Metadata.Name,
			Labels:     head.Metadata.Labels,
			Obj:        typed,
		})
	}
	return set, errors.Join(errs...)
}

var (
	renderMu    sync.Mutex
	renderCache = map[string][]json.RawMessage{}
)

// rendered renders a kustomization under manifests/ once per test binary and returns a fresh
// decoded copy, which a test may change freely.
func rendered(t testing.TB, name string) *objectSet {
	t.Helper()
	renderMu.Lock()
	raws, ok := renderCache[name]
	if !ok {
		var err error
		raws, err = RenderObjects(name)
		if err != nil {
			renderMu.Unlock()
			t.Fatalf("render %s: %v", name, err)
		}
		renderCache[name] = raws
	}
	renderMu.Unlock()
	set, err := decodeObjects(filepath.ToSlash(name), raws)
	if err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	return set
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestDecodeStrictRejectsUnknownAndMiscasedFields(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field":   `{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"selectr":{"a":"b"}}}`,
		"miscased field":  `{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"Selector":{"a":"b"}}}`,
		"duplicate field": `{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"type":"ClusterIP","type":"NodePort"}}`,
		"unknown traefik": `{"apiVersion":"traefik.io/v1alpha1","kind":"Middleware","metadata":{"name":"a"},"spec":{"forwardAuth":{"adress":"http://x/auth"}}}`,
		"unknown kind":    `{"apiVersion":"example.com/v1","kind":"Gadget","metadata":{"name":"a"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeObjects("test", []json.RawMessage{json.RawMessage(doc)}); err == nil {
				t.Fatalf("decoded %s without error", doc)
			}
		})
	}
	ok := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"selector":{"a":"b"}}}`
	if _, err := decodeObjects("test", []json.RawMessage{json.RawMessage(ok)}); err != nil {
		t.Fatalf("valid Service: %v", err)
	}
}

// problemsContain reports whether one of the problems contains every one of the substrings.
func problemsContain(problems []string, subs ...string) bool {
	for _, p := range problems {
		all := true
		for _, s := range subs {
			if !strings.Contains(p, s) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}
