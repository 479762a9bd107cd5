package manifests

import (
	"fmt"
	"net"
	"net/textproto"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/extauthz/extauthz/authz/forwardauth"
)

// ports are the default listen ports of the extauthz binary; the tests take them from
// envoy.DefaultGRPCAddr, forwardauth.DefaultHTTPAddr and admin.DefaultAddr.
type ports struct {
	GRPC, HTTP, Admin int32
}

const (
	extauthzImage = "ghcr.io/extauthz/extauthz"
	envoyImage    = "envoyproxy/envoy"
	envoyTag      = "v1.36." // the Envoy minor version envoy.yaml is written and tested for

	partOfLabel  = "app.kubernetes.io/part-of"
	partOfValue  = "extauthz"
	nonRootUID   = 65532 // distroless "nonroot"
	authzService = "envoy.service.auth.v3.Authorization"

	// traefikNamespace is where the traefik overlay assumes Traefik runs (its NetworkPolicies
	// admit that namespace; docs/deploy.md says to change it for k3s' kube-system).
	traefikNamespace = "traefik"
)

// externalSecrets are the Secrets the manifests use but never contain: created by hand
// (docs/deploy.md), with the keys they must have.
var externalSecrets = map[string][]string{
	"extauthz-tokens":   {"admin-token", "replication-token"},
	"extauthz-raft-tls": {"tls.crt", "tls.key", "ca.crt"}, // the HA admin's mutual TLS
}

// secretKeyForFlag is the only Secret key each token-file flag may point at.
var secretKeyForFlag = map[string]string{
	"admin-token-file":       "admin-token",
	"replication-token-file": "replication-token",
	"tls-cert-file":          "tls.crt",
	"tls-key-file":           "tls.key",
	"admin-ca-file":          "ca.crt",
}

// certManagerKeys are the keys of a Secret that a cert-manager Certificate writes.
var certManagerKeys = []string{"tls.crt", "tls.key", "ca.crt"}

// certificateFor returns the rendered cert-manager Certificate that writes Secret name in ns.
func (k *checker) certificateFor(ns, name string) *certificate {
	for _, o := range k.set.byKind("Certificate") {
		if c := o.Obj.(*certificate); o.Namespace == ns && c.Spec.SecretName == name {
			return c
		}
	}
	return nil
}

// identityHeaders are the headers extauthz adds to an allowed request.
var identityHeaders = []string{"X-Auth-Key-Id", "X-Auth-Key-Prefix", "X-Auth-Scopes", "X-Auth-Project-Id", "X-Auth-User-Id"}

// credentialHeaders carry the API key; they must not reach the application.
var credentialHeaders = []string{"X-Api-Key", "Authorization"}

type problems []string

func (p *problems) add(format string, args ...any) {
	*p = append(*p, fmt.Sprintf(format, args...))
}

// workload is a Deployment or StatefulSet.
type workload struct {
	obj      *object
	replicas int32
	selector *metav1.LabelSelector
	tmpl     *corev1.PodTemplateSpec
	claims   []corev1.PersistentVolumeClaim
}

func (w *workload) spec() *corev1.PodSpec { return &w.tmpl.Spec }

func workloadsOf(set *objectSet) []*workload {
	var out []*workload
	for _, o := range set.Objs {
		switch v := o.Obj.(type) {
		case *appsv1.Deployment:
			out = append(out, &workload{obj: o, replicas: replicasOf(v.Spec.Replicas), selector: v.Spec.Selector, tmpl: &v.Spec.Template})
		case *appsv1.StatefulSet:
			out = append(out, &workload{obj: o, replicas: replicasOf(v.Spec.Replicas), selector: v.Spec.Selector, tmpl: &v.Spec.Template, claims: v.Spec.VolumeClaimTemplates})
		}
	}
	return out
}

func replicasOf(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

// extauthz describes one extauthz container: its command and flags, and the ports it binds.
type extauthz struct {
	role  string // admin, sidecar, standalone
	flags map[string]string
	// Ports bound by the role (0 when the role does not bind it).
	grpc, http, admin int32
	raft              int32 // the HA admin's raft port (--raft-addr), 0 without raft
}

// binds reports whether the container listens on n.
func (e *extauthz) binds(n int32) bool {
	return n != 0 && (n == e.grpc || n == e.http || n == e.admin || n == e.raft)
}

// parseExtauthz reads the command line (and EXTAUTHZ_* variables) of an extauthz container.
// Flags are --name=value or --name value; a flag wins over its variable, as in the binary.
func parseExtauthz(c *corev1.Container, want ports, p *problems, where string) *extauthz {
	args := slices.Clone(c.Args)
	if len(c.Command) > 0 {
		args = append(slices.Clone(c.Command[1:]), c.Args...)
	}
	e := &extauthz{flags: map[string]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			if e.role == "" {
				e.role = a
			} else {
				p.add("%s: unexpected argument %q", where, a)
			}
			continue
		}
		name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !ok {
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "-") {
				p.add("%s: flag %s has no value", where, a)
				continue
			}
			i++
			value = args[i]
		}
		e.flags[name] = value
	}
	for _, env := range c.Env {
		if !strings.HasPrefix(env.Name, "EXTAUTHZ_") || env.ValueFrom != nil {
			continue
		}
		name := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env.Name, "EXTAUTHZ_")), "_", "-")
		if _, set := e.flags[name]; !set {
			e.flags[name] = env.Value
		}
	}
	port := func(flag string, def int32) int32 {
		v, ok := e.flags[flag]
		if !ok {
			return def
		}
		host, ps, err := net.SplitHostPort(v)
		n, err2 := strconv.ParseInt(ps, 10, 32)
		if err != nil || err2 != nil {
			p.add("%s: --%s=%q is not host:port", where, flag, v)
			return def
		}
		if host != "" && host != "0.0.0.0" && host != "::" {
			p.add("%s: --%s=%q binds one address only; the kubelet probes and Services reach the pod IP", where, flag, v)
		}
		return int32(n)
	}
	switch e.role {
	case "admin":
		e.admin = port("admin-addr", want.Admin)
		if v, ok := e.flags["raft-addr"]; ok {
			// The address the other voters dial: a pod DNS name, so only its port is checked.
			_, ps, err := net.SplitHostPort(v)
			n, err2 := strconv.ParseInt(ps, 10, 32)
			if err != nil || err2 != nil || n == 0 {
				p.add("%s: --raft-addr=%q is not host:port", where, v)
			}
			e.raft = int32(n)
		}
	case "sidecar":
		e.grpc = port("grpc-addr", want.GRPC)
		e.http = port("http-addr", want.HTTP)
	case "standalone":
		e.grpc = port("grpc-addr", want.GRPC)
		e.http = port("http-addr", want.HTTP)
		e.admin = port("admin-addr", want.Admin)
	default:
		p.add("%s: extauthz command %q is not admin, sidecar or standalone", where, e.role)
	}
	return e
}

func imageRepo(image string) (repo, tag string) {
	if i := strings.Index(image, "@"); i >= 0 {
		return image[:i], image[i:]
	}
	slash := strings.LastIndex(image, "/")
	if i := strings.LastIndex(image, ":"); i > slash {
		return image[:i], image[i+1:]
	}
	return image, ""
}

func isExtauthz(c *corev1.Container) bool {
	r, _ := imageRepo(c.Image)
	return r == extauthzImage
}

func isEnvoy(c *corev1.Container) bool {
	r, _ := imageRepo(c.Image)
	return r == envoyImage || r == "docker.io/"+envoyImage
}

// checker holds what the checks of one kustomization share.
type checker struct {
	set  *objectSet
	want ports
	p    problems
	wls  []*workload
	// extauthz containers by workload and container name, filled by checkWorkload.
	ext map[*workload]map[string]*extauthz
}

// checkManifests checks that the objects of one kustomization fit together and with the binary's
// ports, and returns every problem found.
func checkManifests(set *objectSet, want ports) []string {
	k := &checker{set: set, want: want, wls: workloadsOf(set), ext: map[*workload]map[string]*extauthz{}}
	for _, o := range set.Objs {
		if o.Labels[partOfLabel] != partOfValue {
			k.p.add("%s: label %s=%s missing", o, partOfLabel, partOfValue)
		}
		if _, ok := o.Obj.(*corev1.Secret); ok {
			k.p.add("%s: a Secret is rendered; secrets are created by hand (docs/deploy.md), never committed", o)
		}
	}
	for _, w := range k.wls {
		k.checkWorkload(w)
	}
	for _, w := range k.wls {
		k.checkWorkloadLinks(w)
	}
	for _, o := range set.byKind("Service") {
		k.checkService(o, o.Obj.(*corev1.Service))
	}
	for _, o := range set.byKind("NetworkPolicy") {
		k.checkNetworkPolicy(o, o.Obj.(*networkingv1.NetworkPolicy))
	}
	for _, o := range set.byKind("PodDisruptionBudget") {
		k.checkPDB(o, o.Obj.(*policyv1.PodDisruptionBudget))
	}
	for _, o := range set.byKind("Middleware") {
		k.checkMiddleware(o, o.Obj.(*middleware))
	}
	for _, o := range set.byKind("IngressRoute") {
		k.checkIngressRoute(o, o.Obj.(*ingressRoute))
	}
	for _, o := range set.byKind("Ingress") {
		k.checkIngress(o, o.Obj.(*networkingv1.Ingress))
	}
	return k.p
}

// selected returns the workloads in ns whose pod template labels a selector matches.
func (k *checker) selected(ns string, sel labels.Selector) []*workload {
	var out []*workload
	if sel.Empty() {
		return nil
	}
	for _, w := range k.wls {
		if w.obj.Namespace == ns && sel.Matches(labels.Set(w.tmpl.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

func (k *checker) checkWorkload(w *workload) {
	where := w.obj.String()
	sel, err := metav1.LabelSelectorAsSelector(w.selector)
	switch {
	case err != nil || w.selector == nil:
		k.p.add("%s: bad selector: %v", where, err)
	case sel.Empty():
		k.p.add("%s: empty selector", where)
	case !sel.Matches(labels.Set(w.tmpl.Labels)):
		k.p.add("%s: selector %s does not match the pod template labels %v", where, sel, w.tmpl.Labels)
	}
	spec := w.spec()

	// Service account: extauthz and the example apps never call the Kubernetes API.
	automount := true
	if spec.ServiceAccountName != "" && spec.ServiceAccountName != "default" {
		sa := k.set.get("ServiceAccount", w.obj.Namespace, spec.ServiceAccountName)
		if sa == nil {
			k.p.add("%s: ServiceAccount %q is not rendered", where, spec.ServiceAccountName)
		} else if v := sa.Obj.(*corev1.ServiceAccount).AutomountServiceAccountToken; v != nil {
			automount = *v
		}
	}
	if spec.AutomountServiceAccountToken != nil {
		automount = *spec.AutomountServiceAccountToken
	}
	if automount {
		k.p.add("%s: a service account token is mounted (automountServiceAccountToken)", where)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		k.p.add("%s: uses the host's namespaces", where)
	}

	// Volumes and what they reference.
	vols := map[string]*corev1.Volume{}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		vols[v.Name] = v
		switch {
		case v.ConfigMap != nil:
			cm := k.configMap(w.obj.Namespace, v.ConfigMap.Name)
			if cm == nil {
				k.p.add("%s: volume %s: ConfigMap %q is not rendered", where, v.Name, v.ConfigMap.Name)
				continue
			}
			for _, it := range v.ConfigMap.Items {
				if _, ok := cm.Data[it.Key]; !ok {
					k.p.add("%s: volume %s: ConfigMap %s has no key %q", where, v.Name, cm.Name, it.Key)
				}
			}
		case v.Secret != nil:
			// extauthz refuses secret files every user may read; Kubernetes' default mode is 0644.
			if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o004 != 0 {
				k.p.add("%s: volume %s: Secret files are readable by every user (defaultMode unset or world-readable); set defaultMode: 0440", where, v.Name)
			}
			for _, it := range v.Secret.Items {
				if it.Mode != nil && *it.Mode&0o004 != 0 {
					k.p.add("%s: volume %s: item %s is world-readable (mode %04o)", where, v.Name, it.Key, *it.Mode)
				}
			}
			keys, ok := externalSecrets[v.Secret.SecretName]
			if !ok && k.certificateFor(w.obj.Namespace, v.Secret.SecretName) != nil {
				keys, ok = certManagerKeys, true
			}
			if !ok {
				k.p.add("%s: volume %s: Secret %q is not one of the documented external secrets %v", where, v.Name, v.Secret.SecretName, sortedKeys(externalSecrets))
				continue
			}
			for _, it := range v.Secret.Items {
				if !slices.Contains(keys, it.Key) {
					k.p.add("%s: volume %s: Secret %s has no key %q (keys: %v)", where, v.Name, v.Secret.SecretName, it.Key, keys)
				}
			}
		case v.EmptyDir != nil:
		case v.PersistentVolumeClaim != nil:
		default:
			k.p.add("%s: volume %s: only ConfigMap, Secret, emptyDir and PVC volumes are expected", where, v.Name)
		}
	}
	for _, c := range w.claims {
		if _, dup := vols[c.Name]; dup {
			k.p.add("%s: volume claim template %s shadows a volume", where, c.Name)
		}
	}

	// Pod-wide port names must be unique.
	portNames := map[string]string{}
	portNums := map[int32]string{}
	for _, c := range spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name != "" {
				if other, dup := portNames[cp.Name]; dup {
					k.p.add("%s: port name %q used by containers %s and %s", where, cp.Name, other, c.Name)
				}
				portNames[cp.Name] = c.Name
			}
			if other, dup := portNums[cp.ContainerPort]; dup {
				k.p.add("%s: port %d declared by containers %s and %s", where, cp.ContainerPort, other, c.Name)
			}
			portNums[cp.ContainerPort] = c.Name
		}
	}

	if len(spec.InitContainers) > 0 || len(spec.EphemeralContainers) > 0 {
		k.p.add("%s: init or ephemeral containers are not checked; add them to the checks", where)
	}
	k.ext[w] = map[string]*extauthz{}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		k.checkContainer(w, c, vols)
		if isExtauthz(c) {
			k.ext[w][c.Name] = k.checkExtauthz(w, c, vols)
		}
	}
	// The admin owns a single-writer store.
	for _, e := range k.ext[w] {
		if peers, ok := e.flags["raft-peers"]; ok && e.role == "admin" {
			if n := int32(len(strings.Split(peers, ","))); n != w.replicas || n%2 == 0 {
				k.p.add("%s: %d replicas for %d raft voters; the voters are the replicas, an odd number", where, w.replicas, n)
			}
			k.checkRaft(w, e, where)
			continue
		}
		if (e.role == "admin" || e.role == "standalone") && w.replicas != 1 {
			k.p.add("%s: runs extauthz %s with %d replicas; the store has one writer: exactly 1", where, e.role, w.replicas)
		}
	}
}

// checkRaft checks an admin cluster's StatefulSet (docs/operations.md): pods started in
// parallel, each named by the headless governing Service that publishes them before they are
// ready, every pod one of the listed voters, a PodDisruptionBudget that keeps a quorum, and the
// raft port open to admin pods only.
func (k *checker) checkRaft(w *workload, e *extauthz, where string) {
	sts, ok := w.obj.Obj.(*appsv1.StatefulSet)
	if !ok {
		k.p.add("%s: an admin cluster must be a StatefulSet (stable pod names and volumes)", where)
		return
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		k.p.add("%s: podManagementPolicy %q; an admin cluster needs Parallel (a pod is ready only once a quorum runs)", where, sts.Spec.PodManagementPolicy)
	}
	ns := w.obj.Namespace
	gov := k.set.get("Service", ns, sts.Spec.ServiceName)
	if gov == nil {
		k.p.add("%s: no governing Service %s", where, sts.Spec.ServiceName)
	} else if svc := gov.Obj.(*corev1.Service); svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
		k.p.add("%s: governing Service %s must be headless with publishNotReadyAddresses (the raft peers find each other before any is ready)", where, sts.Spec.ServiceName)
	}
	// Each pod is named by the downward API and reached under the governing Service.
	host, _, _ := net.SplitHostPort(e.flags["raft-addr"])
	domain, ok := strings.CutPrefix(host, "$(POD_NAME).")
	if !ok || strings.Split(domain, ".")[0] != sts.Spec.ServiceName || e.flags["node-id"] != "$(POD_NAME)" {
		k.p.add("%s: --node-id=%q --raft-addr=%q; want $(POD_NAME) and $(POD_NAME).%s...:port", where, e.flags["node-id"], e.flags["raft-addr"], sts.Spec.ServiceName)
	}
	var podName bool
	for _, c := range w.spec().Containers {
		for _, v := range c.Env {
			podName = podName || (v.Name == "POD_NAME" && v.ValueFrom != nil && v.ValueFrom.FieldRef != nil && v.ValueFrom.FieldRef.FieldPath == "metadata.name")
		}
	}
	if !podName {
		k.p.add("%s: no POD_NAME from the downward API (metadata.name)", where)
	}
	for i, p := range strings.Split(e.flags["raft-peers"], ",") {
		pod := fmt.Sprintf("%s-%d", sts.Name, i)
		if want := pod + "=" + pod + "." + domain + ":" + fmt.Sprint(e.raft); p != want {
			k.p.add("%s: raft peer %d is %q; want %q (the pod, under the governing Service)", where, i, p, want)
		}
	}
	quorum := w.replicas/2 + 1
	kept := false
	for _, o := range k.set.byKind("PodDisruptionBudget") {
		pdb := o.Obj.(*policyv1.PodDisruptionBudget)
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if o.Namespace != ns || err != nil || !sel.Matches(labels.Set(w.tmpl.Labels)) {
			continue
		}
		if m := pdb.Spec.MinAvailable; m != nil && m.Type == intstr.Int && m.IntVal >= quorum && pdb.Spec.MaxUnavailable == nil {
			kept = true
		}
	}
	if !kept {
		k.p.add("%s: no PodDisruptionBudget with minAvailable %d keeps a quorum of the %d raft voters through drains", where, quorum, w.replicas)
	}
	// The raft port: admin pods only, never the replicas or another namespace.
	if ok, _ := k.admits(ns, w.tmpl.Labels, e.raft, "raft", ns, w.tmpl.Labels); !ok {
		k.p.add("%s: the NetworkPolicies do not admit admin pods to each other's raft port %d", where, e.raft)
	}
	for _, src := range []struct {
		ns     string
		labels map[string]string
	}{{ns, map[string]string{"extauthz.io/replica": "true"}}, {ns, nil}, {"elsewhere", nil}} {
		if ok, _ := k.admits(ns, w.tmpl.Labels, e.raft, "raft", src.ns, src.labels); ok {
			k.p.add("%s: the raft port %d is open to pods %v of namespace %s; admin pods only", where, e.raft, src.labels, src.ns)
		}
	}
}

func (k *checker) configMap(ns, name string) *corev1.ConfigMap {
	if o := k.set.get("ConfigMap", ns, name); o != nil {
		return o.Obj.(*corev1.ConfigMap)
	}
	return nil
}

func (k *checker) checkContainer(w *workload, c *corev1.Container, vols map[string]*corev1.Volume) {
	where := w.obj.String() + " container " + c.Name
	spec := w.spec()

	repo, tag := imageRepo(c.Image)
	switch {
	case repo == "":
		k.p.add("%s: no image", where)
	case repo == extauthzImage:
		// the tag is set by the kustomization's images: entry
	case tag == "" || tag == "latest":
		k.p.add("%s: image %q is not pinned to a tag", where, c.Image)
	}

	// Security context, container value over pod value where both exist.
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	runAsNonRoot := firstBool(sc.RunAsNonRoot, psc.RunAsNonRoot)
	runAsUser := sc.RunAsUser
	if runAsUser == nil {
		runAsUser = psc.RunAsUser
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if runAsNonRoot == nil || !*runAsNonRoot {
		k.p.add("%s: runAsNonRoot is not true", where)
	}
	if runAsUser == nil || *runAsUser != nonRootUID {
		k.p.add("%s: runAsUser is not %d", where, nonRootUID)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		k.p.add("%s: readOnlyRootFilesystem is not true", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		k.p.add("%s: allowPrivilegeEscalation is not false", where)
	}
	if sc.Privileged != nil && *sc.Privileged {
		k.p.add("%s: privileged", where)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		k.p.add("%s: capabilities must drop ALL and add none", where)
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		k.p.add("%s: seccompProfile is not RuntimeDefault", where)
	}

	// Resources.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		if !okReq || !okLim {
			k.p.add("%s: %s request and limit must both be set", where, r)
			continue
		}
		if req.Cmp(lim) > 0 {
			k.p.add("%s: %s request %s is above its limit %s", where, r, req.String(), lim.String())
		}
	}

	// Probes: every container is checked for readiness; a container that other pods or the
	// kubelet can reach (it declares ports) is also checked for liveness.
	if c.ReadinessProbe == nil {
		k.p.add("%s: no readinessProbe", where)
	}
	if c.LivenessProbe == nil && len(c.Ports) > 0 {
		k.p.add("%s: no livenessProbe", where)
	}
	for _, pr := range probes(c) {
		k.checkProbePort(where+" "+pr.kind, spec, c, pr.Probe)
	}

	// Mounts, env and envFrom references.
	for _, m := range c.VolumeMounts {
		_, isVol := vols[m.Name]
		isClaim := slices.ContainsFunc(w.claims, func(pvc corev1.PersistentVolumeClaim) bool { return pvc.Name == m.Name })
		if !isVol && !isClaim {
			k.p.add("%s: mounts %q, which is neither a volume nor a volume claim template", where, m.Name)
		}
		if m.SubPath != "" || m.SubPathExpr != "" {
			if v := vols[m.Name]; v != nil && (v.ConfigMap != nil || v.Secret != nil) {
				k.p.add("%s: mounts %s with subPath: the kubelet never updates such a file (policy reload)", where, m.Name)
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			continue
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
			cm := k.configMap(w.obj.Namespace, r.Name)
			if cm == nil {
				k.p.add("%s: env %s: ConfigMap %q is not rendered", where, e.Name, r.Name)
			} else if _, ok := cm.Data[r.Key]; !ok {
				k.p.add("%s: env %s: ConfigMap %s has no key %q", where, e.Name, r.Name, r.Key)
			}
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil {
			keys, ok := externalSecrets[r.Name]
			if !ok {
				k.p.add("%s: env %s: Secret %q is not one of the documented external secrets", where, e.Name, r.Name)
			} else if !slices.Contains(keys, r.Key) {
				k.p.add("%s: env %s: Secret %s has no key %q", where, e.Name, r.Name, r.Key)
			}
		}
	}
	for _, ef := range c.EnvFrom {
		if r := ef.ConfigMapRef; r != nil && k.configMap(w.obj.Namespace, r.Name) == nil {
			k.p.add("%s: envFrom: ConfigMap %q is not rendered", where, r.Name)
		}
		if r := ef.SecretRef; r != nil {
			if _, ok := externalSecrets[r.Name]; !ok {
				k.p.add("%s: envFrom: Secret %q is not one of the documented external secrets", where, r.Name)
			}
		}
	}
}

func firstBool(vs ...*bool) *bool {
	for _, v := range vs {
		if v != nil {
			return v
		}
	}
	return nil
}

type namedProbe struct {
	kind string
	*corev1.Probe
}

// probes lists the probes a container has, in a fixed order.
func probes(c *corev1.Container) []namedProbe {
	var out []namedProbe
	for _, np := range []namedProbe{{"startupProbe", c.StartupProbe}, {"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}} {
		if np.Probe != nil {
			out = append(out, np)
		}
	}
	return out
}

// probePort resolves the port a probe connects to. The kubelet resolves a named port among the
// probe's own container's ports.
func probePort(c *corev1.Container, pr *corev1.Probe) (int32, bool) {
	var ios intstr.IntOrString
	switch {
	case pr.HTTPGet != nil:
		ios = pr.HTTPGet.Port
	case pr.TCPSocket != nil:
		ios = pr.TCPSocket.Port
	case pr.GRPC != nil:
		return pr.GRPC.Port, true
	default:
		return 0, false
	}
	if ios.Type == intstr.String {
		for _, cp := range c.Ports {
			if cp.Name == ios.StrVal {
				return cp.ContainerPort, true
			}
		}
		return 0, false
	}
	return ios.IntVal, true
}

func (k *checker) checkProbePort(where string, spec *corev1.PodSpec, c *corev1.Container, pr *corev1.Probe) {
	if pr.Exec != nil {
		k.p.add("%s: exec probes need a shell the images do not have", where)
		return
	}
	n, ok := probePort(c, pr)
	if !ok {
		k.p.add("%s: port is not one of the container's named ports", where)
		return
	}
	for _, oc := range spec.Containers {
		for _, cp := range oc.Ports {
			if cp.ContainerPort == n {
				return
			}
		}
	}
	k.p.add("%s: port %d is not declared by any container of the pod", where, n)
}

// mountFor finds the volume mount of c that holds file, and the volume behind it.
func mountFor(c *corev1.Container, vols map[string]*corev1.Volume, file string) (*corev1.VolumeMount, *corev1.Volume, string) {
	var best *corev1.VolumeMount
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		mp := strings.TrimSuffix(m.MountPath, "/")
		if file == mp || strings.HasPrefix(file, mp+"/") {
			if best == nil || len(mp) > len(strings.TrimSuffix(best.MountPath, "/")) {
				best = m
			}
		}
	}
	if best == nil {
		return nil, nil, ""
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(file, strings.TrimSuffix(best.MountPath, "/")), "/")
	return best, vols[best.Name], rel
}

// projectedKey returns the key of a ConfigMap or Secret volume that appears at rel.
func projectedKey(items []corev1.KeyToPath, rel string) (string, bool) {
	if len(items) == 0 {
		return rel, rel != "" && !strings.Contains(rel, "/")
	}
	for _, it := range items {
		if path.Clean(it.Path) == rel {
			return it.Key, true
		}
	}
	return "", false
}

// checkExtauthz checks one extauthz container against the binary's flags and ports.
func (k *checker) checkExtauthz(w *workload, c *corev1.Container, vols map[string]*corev1.Volume) *extauthz {
	where := w.obj.String() + " container " + c.Name
	e := parseExtauthz(c, k.want, &k.p, where)

	// Declared ports are exactly the ports the role binds.
	var bound []int32
	for _, n := range []int32{e.grpc, e.http, e.admin, e.raft} {
		if n != 0 {
			bound = append(bound, n)
		}
	}
	for _, n := range bound {
		if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
			return cp.ContainerPort == n && (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP)
		}) {
			k.p.add("%s: extauthz %s listens on %d, which is not a declared container port", where, e.role, n)
		}
	}
	for _, cp := range c.Ports {
		if !slices.Contains(bound, cp.ContainerPort) {
			k.p.add("%s: declares port %d, but extauthz %s listens on %v", where, cp.ContainerPort, e.role, bound)
		}
	}

	// The HTTP door must know which proxy calls it: auto would take whichever family a request
	// carries, so name the one the deployment runs.
	if e.http != 0 {
		switch fh := e.flags["forward-headers"]; fh {
		case forwardauth.FamilyTraefik, forwardauth.FamilyNginx, forwardauth.FamilyEnvoy:
		case "":
			k.p.add("%s: --forward-headers is not set: name the proxy that calls /auth (traefik, nginx or envoy)", where)
		default:
			k.p.add("%s: --forward-headers=%s: name the proxy that calls /auth (traefik, nginx or envoy)", where, fh)
		}
	}

	// Probes: gRPC health on the gRPC port, /readyz and /healthz on the HTTP port (admin: admin port).
	probePortFor := e.http
	if e.role == "admin" {
		probePortFor = e.admin
	}
	grpcProbe := false
	for _, pr := range probes(c) {
		kind, pw := pr.kind, where+" "+pr.kind
		n, _ := probePort(c, pr.Probe)
		switch {
		case pr.GRPC != nil:
			grpcProbe = true
			if e.grpc == 0 || n != e.grpc {
				k.p.add("%s: gRPC probe on port %d, but extauthz %s serves gRPC health on %d", pw, n, e.role, e.grpc)
			}
			if s := pr.GRPC.Service; s != nil && *s != "" && *s != authzService {
				k.p.add("%s: gRPC health service %q is not registered (use \"\" or %q)", pw, *s, authzService)
			}
		case pr.HTTPGet != nil:
			if !(n == probePortFor || (e.role == "standalone" && e.binds(n) && n != e.grpc)) {
				k.p.add("%s: HTTP probe on port %d, but extauthz %s serves /healthz and /readyz on %d", pw, n, e.role, probePortFor)
			}
			wantPath := map[string][]string{
				"readinessProbe": {"/readyz"},
				"livenessProbe":  {"/healthz"},
				"startupProbe":   {"/healthz", "/readyz"},
			}[kind]
			if !slices.Contains(wantPath, pr.HTTPGet.Path) {
				k.p.add("%s: path %q, want one of %v", pw, pr.HTTPGet.Path, wantPath)
			}
		case pr.TCPSocket != nil:
			if !e.binds(n) {
				k.p.add("%s: TCP probe on port %d, which extauthz %s does not listen on", pw, n, e.role)
			}
		}
	}
	if e.grpc != 0 && !grpcProbe {
		k.p.add("%s: no gRPC probe on the gRPC port %d", where, e.grpc)
	}

	// Required flags.
	required := map[string][]string{
		"admin":      {"data-dir", "policy", "admin-token-file", "replication-token-file"},
		"sidecar":    {"admin-url", "data-dir", "policy", "replication-token-file"},
		"standalone": {"data-dir", "policy"},
	}[e.role]
	for _, f := range required {
		if _, ok := e.flags[f]; !ok {
			k.p.add("%s: extauthz %s needs --%s", where, e.role, f)
		}
	}

	// Files behind the flags.
	if f, ok := e.flags["policy"]; ok {
		k.checkPolicyFile(w, c, vols, where, f)
	}
	for flag, key := range secretKeyForFlag {
		f, ok := e.flags[flag]
		if !ok {
			continue
		}
		m, v, rel := mountFor(c, vols, f)
		if m == nil || v == nil || v.Secret == nil {
			k.p.add("%s: --%s=%s is not in a mounted Secret volume", where, flag, f)
			continue
		}
		got, ok := projectedKey(v.Secret.Items, rel)
		if !ok || got != key {
			k.p.add("%s: --%s=%s is Secret %s key %q, want key %q", where, flag, f, v.Secret.SecretName, got, key)
		}
	}
	if d, ok := e.flags["data-dir"]; ok {
		k.checkDataDir(w, c, vols, where, e, d)
	}
	// Least privilege: an enforcement replica never sees the admin token.
	if e.role == "sidecar" {
		for _, m := range c.VolumeMounts {
			v := vols[m.Name]
			if v == nil || v.Secret == nil {
				continue
			}
			if len(v.Secret.Items) == 0 || slices.ContainsFunc(v.Secret.Items, func(it corev1.KeyToPath) bool { return it.Key == "admin-token" }) {
				k.p.add("%s: mounts Secret %s with its admin-token; sidecars get the replication token only (items)", where, v.Secret.SecretName)
			}
		}
	}
	return e
}

func (k *checker) checkPolicyFile(w *workload, c *corev1.Container, vols map[string]*corev1.Volume, where, file string) {
	m, v, rel := mountFor(c, vols, file)
	if m == nil || v == nil || v.ConfigMap == nil {
		k.p.add("%s: --policy=%s is not in a mounted ConfigMap volume", where, file)
		return
	}
	key, ok := projectedKey(v.ConfigMap.Items, rel)
	cm := k.configMap(w.obj.Namespace, v.ConfigMap.Name)
	if !ok || cm == nil {
		k.p.add("%s: --policy=%s does not name a key of ConfigMap %s", where, file, v.ConfigMap.Name)
		return
	}
	data, ok := cm.Data[key]
	if !ok {
		k.p.add("%s: --policy=%s: ConfigMap %s has no key %q", where, file, cm.Name, key)
		return
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(data), &doc); err != nil {
		k.p.add("%s: policy %s/%s is not YAML: %v", where, cm.Name, key, err)
		return
	}
	for _, f := range []string{"keys", "scopes", "routes", "messages"} {
		if _, ok := doc[f]; !ok {
			k.p.add("%s: policy %s/%s has no %q", where, cm.Name, key, f)
		}
	}
}

func (k *checker) checkDataDir(w *workload, c *corev1.Container, vols map[string]*corev1.Volume, where string, e *extauthz, dir string) {
	var m *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if path.Clean(c.VolumeMounts[i].MountPath) == path.Clean(dir) {
			m = &c.VolumeMounts[i]
		}
	}
	if m == nil {
		k.p.add("%s: --data-dir=%s is not a volume mount (the root filesystem is read-only)", where, dir)
		return
	}
	if m.ReadOnly {
		k.p.add("%s: --data-dir=%s is mounted read-only", where, dir)
	}
	persistent := slices.ContainsFunc(w.claims, func(pvc corev1.PersistentVolumeClaim) bool { return pvc.Name == m.Name })
	if v := vols[m.Name]; v != nil {
		switch {
		case v.PersistentVolumeClaim != nil:
			persistent = true
		case v.EmptyDir != nil:
		default:
			k.p.add("%s: --data-dir=%s is on volume %s, which is neither emptyDir nor a PVC", where, dir, m.Name)
		}
	}
	if (e.role == "admin" || e.role == "standalone") && !persistent {
		k.p.add("%s: extauthz %s keeps the only copy of the keys in --data-dir=%s: it needs a PersistentVolumeClaim", where, e.role, dir)
	}
}

// checkWorkloadLinks checks what a workload connects to: the admin URL of its replicas and the
// Envoy config it mounts. It runs after every workload's extauthz containers are known.
func (k *checker) checkWorkloadLinks(w *workload) {
	spec := w.spec()
	vols := map[string]*corev1.Volume{}
	for i := range spec.Volumes {
		vols[spec.Volumes[i].Name] = &spec.Volumes[i]
	}
	for name, e := range k.ext[w] {
		if u, ok := e.flags["admin-url"]; ok {
			for _, member := range strings.Split(u, ",") { // an admin cluster's members
				k.checkAdminURL(w, w.obj.String()+" container "+name, strings.TrimSpace(member))
			}
		}
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		if isEnvoy(c) {
			k.checkEnvoyContainer(w, c, vols)
		}
	}
}

// serviceTargets resolves a Service port in every workload the Service selects.
func (k *checker) serviceTargets(svc *corev1.Service, ns string, sp corev1.ServicePort) (targets []target) {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	for _, w := range k.selected(ns, sel) {
		c, n, ok := resolveTargetPort(w.spec(), sp)
		t := target{w: w, port: n, ok: ok}
		if ok {
			t.container = c
			t.ext = k.ext[w][c.Name]
			for _, cp := range c.Ports {
				if cp.ContainerPort == n {
					t.portName = cp.Name
				}
			}
		}
		targets = append(targets, t)
	}
	return targets
}

type target struct {
	w         *workload
	container *corev1.Container
	ext       *extauthz // nil if the container is not extauthz
	port      int32
	portName  string
	ok        bool
}

// resolveTargetPort finds the container and port a Service port sends to in a pod.
func resolveTargetPort(spec *corev1.PodSpec, sp corev1.ServicePort) (*corev1.Container, int32, bool) {
	tp := sp.TargetPort
	for i := range spec.Containers {
		c := &spec.Containers[i]
		for _, cp := range c.Ports {
			switch {
			case tp.Type == intstr.String && tp.StrVal != "" && cp.Name == tp.StrVal,
				tp.Type == intstr.Int && tp.IntVal != 0 && cp.ContainerPort == tp.IntVal,
				tp.Type == intstr.Int && tp.IntVal == 0 && cp.ContainerPort == sp.Port:
				return c, cp.ContainerPort, true
			}
		}
	}
	return nil, 0, false
}

// serviceByHost finds the Service a cluster-DNS host name names, seen from namespace fromNS
// ("" = the name must carry its namespace, as for Traefik, which resolves from its own).
func (k *checker) serviceByHost(host, fromNS string) (*object, string) {
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	ns := fromNS
	switch {
	case len(parts) == 1:
		if fromNS == "" {
			return nil, fmt.Sprintf("host %q has no namespace; it is resolved from another namespace: use <service>.<namespace>.svc", host)
		}
	case len(parts) >= 2:
		ns = parts[1]
		if len(parts) >= 3 && parts[2] != "svc" {
			return nil, fmt.Sprintf("host %q is not <service>.<namespace>.svc[.<cluster domain>]", host)
		}
	}
	o := k.set.get("Service", ns, parts[0])
	if o == nil {
		return nil, fmt.Sprintf("host %q: no Service %s in namespace %q is rendered", host, parts[0], ns)
	}
	return o, ""
}

// servicePort finds the port of a Service that a URL port or a route port names.
func servicePort(svc *corev1.Service, port intstr.IntOrString) (corev1.ServicePort, bool) {
	for _, sp := range svc.Spec.Ports {
		if (port.Type == intstr.Int && sp.Port == port.IntVal) || (port.Type == intstr.String && sp.Name == port.StrVal) {
			return sp, true
		}
	}
	return corev1.ServicePort{}, false
}

// checkEdge checks that the Service behind host:port reaches a container port for which accept
// says yes, in every selected workload, and that NetworkPolicies admit the caller.
func (k *checker) checkEdge(where, host string, port intstr.IntOrString, fromNS string, from map[string]string, srcNS string, want string, accept func(t target) bool) {
	so, msg := k.serviceByHost(host, fromNS)
	if so == nil {
		k.p.add("%s: %s", where, msg)
		return
	}
	svc := so.Obj.(*corev1.Service)
	sp, ok := servicePort(svc, port)
	if !ok {
		k.p.add("%s: %s has no port %s", where, so, port.String())
		return
	}
	targets := k.serviceTargets(svc, so.Namespace, sp)
	if len(targets) == 0 {
		k.p.add("%s: %s selects no workload", where, so)
	}
	for _, t := range targets {
		if !t.ok || !accept(t) {
			k.p.add("%s: %s port %s reaches %s port %d, which is not %s", where, so, port.String(), t.w.obj, t.port, want)
			continue
		}
		if ok, why := k.admits(so.Namespace, t.w.tmpl.Labels, t.port, t.portName, srcNS, from); !ok {
			k.p.add("%s: NetworkPolicy %s does not admit it to %s port %d", where, why, t.w.obj, t.port)
		}
	}
}

func (k *checker) checkAdminURL(w *workload, where, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		k.p.add("%s: --admin-url=%q is not http(s)://<service>:<port>", where, raw)
		return
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	wantTLS := u.Scheme == "https"
	n, _ := strconv.Atoi(port)
	k.checkEdge(where+" --admin-url", u.Hostname(), intstr.FromInt32(int32(n)), w.obj.Namespace, w.tmpl.Labels, w.obj.Namespace,
		"the admin port of an extauthz admin", func(t target) bool {
			if t.ext == nil || (t.ext.role != "admin" && t.ext.role != "standalone") || t.port != t.ext.admin {
				return false
			}
			_, servesTLS := t.ext.flags["tls-cert-file"]
			switch {
			case servesTLS && !wantTLS:
				k.p.add("%s: --admin-url=%s is plain http://, but the admin serves TLS", where, raw)
			case wantTLS && !servesTLS:
				k.p.add("%s: --admin-url=%s is https://, but the admin has no --tls-cert-file", where, raw)
			case wantTLS:
				k.checkAdminName(t, where, u.Hostname())
			}
			return true
		})
}

// checkAdminName checks that the certificate the admin target serves (the cert-manager
// Certificate of the Secret behind its --tls-cert-file) carries the host the sidecar dials.
func (k *checker) checkAdminName(t target, where, host string) {
	c := t.w.spec().Containers
	for i := range c {
		if !isExtauthz(&c[i]) {
			continue
		}
		vols := map[string]*corev1.Volume{}
		for j := range t.w.spec().Volumes {
			vols[t.w.spec().Volumes[j].Name] = &t.w.spec().Volumes[j]
		}
		_, v, _ := mountFor(&c[i], vols, t.ext.flags["tls-cert-file"])
		if v == nil || v.Secret == nil {
			return // reported by checkExtauthz
		}
		cert := k.certificateFor(t.w.obj.Namespace, v.Secret.SecretName)
		if cert == nil {
			k.p.add("%s: no cert-manager Certificate writes Secret %s, the admin's --tls-cert-file", where, v.Secret.SecretName)
			return
		}
		if !slices.Contains(cert.Spec.DNSNames, host) {
			k.p.add("%s: the admin's Certificate %s does not name %q (dnsNames %v): the sidecar would refuse it", where, cert.Metadata.Name, host, cert.Spec.DNSNames)
		}
		return
	}
}

// nsLabels are the labels of a namespace: those of a rendered Namespace object plus the one
// Kubernetes sets on every namespace.
func (k *checker) nsLabels(ns string) labels.Set {
	l := labels.Set{"kubernetes.io/metadata.name": ns}
	if o := k.set.get("Namespace", "", ns); o != nil {
		for key, v := range o.Labels {
			l[key] = v
		}
	}
	return l
}

// admits reports whether the NetworkPolicies let a pod (srcLabels in srcNS; nil labels = any
// pod of that namespace) connect to port of a pod with dstLabels in dstNS. With no policy
// selecting the destination, everything is admitted.
func (k *checker) admits(dstNS string, dstLabels map[string]string, port int32, portName, srcNS string, srcLabels map[string]string) (bool, string) {
	var names []string
	for _, o := range k.set.byKind("NetworkPolicy") {
		np := o.Obj.(*networkingv1.NetworkPolicy)
		if o.Namespace != dstNS {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(labels.Set(dstLabels)) {
			continue
		}
		if len(np.Spec.PolicyTypes) > 0 && !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			continue
		}
		names = append(names, o.Name)
		for _, rule := range np.Spec.Ingress {
			if ruleAdmits(k, rule, o.Namespace, port, portName, srcNS, srcLabels) {
				return true, ""
			}
		}
	}
	if len(names) == 0 {
		return true, ""
	}
	return false, strings.Join(names, ", ")
}

func ruleAdmits(k *checker, rule networkingv1.NetworkPolicyIngressRule, npNS string, port int32, portName, srcNS string, srcLabels map[string]string) bool {
	portOK := len(rule.Ports) == 0
	for _, rp := range rule.Ports {
		if rp.Protocol != nil && *rp.Protocol != corev1.ProtocolTCP {
			continue
		}
		switch {
		case rp.Port == nil:
			portOK = true
		case rp.Port.Type == intstr.String && rp.Port.StrVal == portName && portName != "":
			portOK = true
		case rp.Port.Type == intstr.Int && rp.EndPort != nil && rp.Port.IntVal <= port && port <= *rp.EndPort:
			portOK = true
		case rp.Port.Type == intstr.Int && rp.Port.IntVal == port:
			portOK = true
		}
	}
	if !portOK {
		return false
	}
	if len(rule.From) == 0 {
		return true
	}
	for _, peer := range rule.From {
		if peer.IPBlock != nil {
			continue
		}
		nsOK := srcNS == npNS
		if peer.NamespaceSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
			nsOK = err == nil && sel.Matches(k.nsLabels(srcNS))
		}
		podOK := true
		if peer.PodSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
			podOK = err == nil && (sel.Empty() || (srcLabels != nil && sel.Matches(labels.Set(srcLabels))))
		}
		if nsOK && podOK {
			return true
		}
	}
	return false
}

func (k *checker) checkService(o *object, svc *corev1.Service) {
	if len(svc.Spec.Selector) == 0 {
		k.p.add("%s: no selector", o)
		return
	}
	wls := k.selected(o.Namespace, labels.SelectorFromSet(svc.Spec.Selector))
	if len(wls) == 0 {
		k.p.add("%s: selector %v matches no workload's pod template", o, svc.Spec.Selector)
	}
	if len(svc.Spec.Ports) > 1 {
		for _, sp := range svc.Spec.Ports {
			if sp.Name == "" {
				k.p.add("%s: port %d has no name (required with several ports)", o, sp.Port)
			}
		}
	}
	for _, sp := range svc.Spec.Ports {
		for _, t := range k.serviceTargets(svc, o.Namespace, sp) {
			if !t.ok {
				k.p.add("%s: port %d targets %s, which %s does not declare", o, sp.Port, sp.TargetPort.String(), t.w.obj)
			}
		}
	}
}

func (k *checker) checkNetworkPolicy(o *object, np *networkingv1.NetworkPolicy) {
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		k.p.add("%s: bad podSelector: %v", o, err)
		return
	}
	wls := k.selected(o.Namespace, sel)
	if len(wls) == 0 {
		k.p.add("%s: podSelector matches no workload", o)
	}
	for _, rule := range np.Spec.Ingress {
		for _, rp := range rule.Ports {
			if rp.Port == nil {
				continue
			}
			for _, w := range wls {
				found := false
				for _, c := range w.spec().Containers {
					for _, cp := range c.Ports {
						if (rp.Port.Type == intstr.Int && cp.ContainerPort == rp.Port.IntVal) || (rp.Port.Type == intstr.String && cp.Name == rp.Port.StrVal) {
							found = true
						}
					}
				}
				if !found {
					k.p.add("%s: admits port %s, which %s does not declare", o, rp.Port.String(), w.obj)
				}
			}
		}
	}
}

func (k *checker) checkPDB(o *object, pdb *policyv1.PodDisruptionBudget) {
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || pdb.Spec.Selector == nil {
		k.p.add("%s: bad selector: %v", o, err)
		return
	}
	wls := k.selected(o.Namespace, sel)
	if len(wls) == 0 {
		k.p.add("%s: selector matches no workload", o)
	}
	if m := pdb.Spec.MinAvailable; m != nil && m.Type == intstr.Int {
		for _, w := range wls {
			if m.IntVal >= w.replicas {
				k.p.add("%s: minAvailable %d with %d replicas of %s blocks every node drain", o, m.IntVal, w.replicas, w.obj)
			}
		}
	}
}

func hasHeader(list []string, h string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.EqualFold(s, h) })
}

// underscoreTwins returns every spelling of h with each '-' kept or made '_' or '.', as Go's
// server (and so Traefik) canonicalises them: WSGI servers, PHP and others read them all as one
// variable.
func underscoreTwins(h string) []string {
	out := []string{""}
	for _, c := range h {
		var next []string
		for _, o := range out {
			next = append(next, o+string(c))
			if c == '-' {
				next = append(next, o+"_", o+".")
			}
		}
		out = next
	}
	for i, o := range out {
		out[i] = textproto.CanonicalMIMEHeaderKey(o)
	}
	return out
}

// checkStripped reports each identity or credential header, in any underscore spelling, that a
// forwardAuth middleware would pass from the client to the backend: on a 2xx Traefik deletes the
// request headers named in authResponseHeaders and those matching authResponseHeadersRegex.
func checkStripped(where string, fa *forwardAuth, p *problems) {
	var re *regexp.Regexp
	if fa.AuthResponseHeadersRegex != "" {
		var err error
		if re, err = regexp.Compile(fa.AuthResponseHeadersRegex); err != nil {
			p.add("%s: authResponseHeadersRegex: %v", where, err)
		}
	}
	for _, h := range append(slices.Clone(identityHeaders), credentialHeaders...) {
		for _, twin := range underscoreTwins(h) {
			if !hasHeader(fa.AuthResponseHeaders, twin) && (re == nil || !re.MatchString(twin)) {
				p.add("%s: a client's %s reaches the backend: neither authResponseHeaders nor authResponseHeadersRegex strips it", where, twin)
				break
			}
		}
	}
}

func (k *checker) checkMiddleware(o *object, mw *middleware) {
	fa := mw.Spec.ForwardAuth
	if fa == nil {
		return
	}
	u, err := url.Parse(fa.Address)
	if err != nil || u.Scheme != "http" || u.Port() == "" {
		k.p.add("%s: forwardAuth address %q is not http://<service>.<namespace>.svc:<port>/auth", o, fa.Address)
		return
	}
	if u.Path != "/auth" && !strings.HasPrefix(u.Path, "/auth/") {
		k.p.add("%s: forwardAuth address path %q is not /auth", o, u.Path)
	}
	n, _ := strconv.Atoi(u.Port())
	// Traefik resolves the host from its own namespace: the name must carry the namespace.
	k.checkEdge(o.String()+" forwardAuth address", u.Hostname(), intstr.FromInt32(int32(n)), "", nil, traefikNamespace,
		"the forwardAuth (HTTP) port of an extauthz replica", func(t target) bool {
			if t.ext != nil && t.ext.http != 0 && t.port == t.ext.http && t.ext.flags["forward-headers"] != forwardauth.FamilyTraefik {
				k.p.add("%s: forwardAuth calls an extauthz replica whose --forward-headers is %q, not traefik", o, t.ext.flags["forward-headers"])
			}
			return t.ext != nil && t.ext.http != 0 && t.port == t.ext.http
		})
	if fa.TrustForwardHeader == nil {
		k.p.add("%s: trustForwardHeader is not set explicitly (unset means legacy behaviour and a warning in Traefik ≥ 3.6.14)", o)
	}
	checkStripped(o.String(), fa, &k.p)
	if len(fa.AuthRequestHeaders) > 0 {
		k.p.add("%s: authRequestHeaders is set: Traefik would filter client headers by exact name, so a method or path override spelt with a mix of '-' and '_' would reach the backend without extauthz seeing it; leave it unset", o)
	}
}

// isForwardAuth reports whether the middleware reference names a rendered forwardAuth
// Middleware.
func (k *checker) isForwardAuth(ns string, ref traefikRef) bool {
	if ref.Namespace != "" {
		ns = ref.Namespace
	}
	o := k.set.get("Middleware", ns, ref.Name)
	return o != nil && o.Obj.(*middleware).Spec.ForwardAuth != nil
}

func (k *checker) checkIngressRoute(o *object, ir *ingressRoute) {
	var adminMatches []string
	for i, rt := range ir.Spec.Routes {
		where := fmt.Sprintf("%s route %d (%s)", o, i, rt.Match)
		protected := false
		for _, ref := range rt.Middlewares {
			ns := o.Namespace
			if ref.Namespace != "" {
				ns = ref.Namespace
			}
			if k.set.get("Middleware", ns, ref.Name) == nil {
				k.p.add("%s: Middleware %s/%s is not rendered", where, ns, ref.Name)
			}
			protected = protected || k.isForwardAuth(o.Namespace, ref)
		}
		if len(rt.Services) == 0 {
			k.p.add("%s: no services", where)
		}
		for _, s := range rt.Services {
			if s.Kind != "" && s.Kind != "Service" {
				k.p.add("%s: service kind %s is not checked", where, s.Kind)
				continue
			}
			ns := o.Namespace
			if s.Namespace != "" {
				ns = s.Namespace
			}
			port := s.Port
			if port.IntVal == 0 && port.StrVal == "" {
				k.p.add("%s: service %s has no port", where, s.Name)
				continue
			}
			toAdmin := false
			k.checkEdge(where, s.Name+"."+ns, port, "", nil, traefikNamespace, "a declared container port", func(t target) bool {
				if t.ext != nil && t.ext.admin != 0 && t.port == t.ext.admin {
					toAdmin = true
				}
				return true
			})
			switch {
			case toAdmin && protected:
				k.p.add("%s: key management goes to the admin through forwardAuth; the admin authenticates it itself", where)
			case toAdmin && !strings.Contains(rt.Match, "/api/v1/api-keys") && !strings.Contains(rt.Match, "/api/v1/projects"):
				k.p.add("%s: routes to the admin, but is not a key-management route", where)
			case toAdmin:
				adminMatches = append(adminMatches, rt.Match)
			case !protected:
				k.p.add("%s: reaches %s without a forwardAuth middleware: no API-key check", where, s.Name)
			}
		}
	}
	all := strings.Join(adminMatches, " ")
	for _, p := range []string{"/api/v1/api-keys", "/api/v1/projects"} {
		if !strings.Contains(all, p) {
			k.p.add("%s: no route sends %s key management to the admin", o, p)
		}
	}
}

func (k *checker) checkIngress(o *object, ing *networkingv1.Ingress) {
	for _, rule := range ing.Spec.Rules {
		if rule.HTTP == nil {
			continue
		}
		for _, p := range rule.HTTP.Paths {
			b := p.Backend.Service
			if b == nil {
				k.p.add("%s: path %s has no Service backend", o, p.Path)
				continue
			}
			port := intstr.FromInt32(b.Port.Number)
			if b.Port.Name != "" {
				port = intstr.FromString(b.Port.Name)
			}
			k.checkEdge(fmt.Sprintf("%s path %s", o, p.Path), b.Name, port, o.Namespace, nil, o.Namespace, "a declared container port", func(target) bool { return true })
		}
	}
}
