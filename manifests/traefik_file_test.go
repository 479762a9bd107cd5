package manifests

import (
	"net/url"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// traefikFile is the part of Traefik's file-provider dynamic configuration the example uses;
// decoding rejects anything else.
type traefikFile struct {
	HTTP struct {
		Routers map[string]struct {
			EntryPoints []string `json:"entryPoints,omitempty"`
			Rule        string   `json:"rule"`
			Priority    int      `json:"priority,omitempty"`
			Middlewares []string `json:"middlewares,omitempty"`
			Service     string   `json:"service"`
		} `json:"routers"`
		Middlewares map[string]struct {
			ForwardAuth *forwardAuth `json:"forwardAuth,omitempty"`
		} `json:"middlewares"`
		Services map[string]struct {
			LoadBalancer struct {
				Servers []struct {
					URL string `json:"url"`
				} `json:"servers"`
			} `json:"loadBalancer"`
		} `json:"services"`
	} `json:"http"`
}

func loadTraefikFile(y []byte) (*traefikFile, error) {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return nil, err
	}
	cfg := &traefikFile{}
	return cfg, decodeStrict(j, cfg)
}

// checkTraefikFile checks the single-host Traefik example against the binary's ports: forwardAuth
// to the HTTP port on loopback, key management to the admin port without it, the rest through it.
func checkTraefikFile(cfg *traefikFile, want ports) []string {
	var p problems
	h := &cfg.HTTP
	for name, mw := range h.Middlewares {
		fa := mw.ForwardAuth
		if fa == nil {
			continue
		}
		where := "middleware " + name
		u, err := url.Parse(fa.Address)
		if err != nil || u.Scheme != "http" {
			p.add("%s: address %q is not an http URL", where, fa.Address)
			continue
		}
		if n, _ := strconv.Atoi(u.Port()); !isLoopback(u.Hostname()) || int32(n) != want.HTTP {
			p.add("%s: address %s, want 127.0.0.1:%d (extauthz forwardAuth)", where, u.Host, want.HTTP)
		}
		if u.Path != "/auth" {
			p.add("%s: address path %q, want /auth", where, u.Path)
		}
		if fa.TrustForwardHeader == nil {
			p.add("%s: trustForwardHeader is not set explicitly", where)
		}
		checkStripped(where, fa, &p)
	}
	var adminRules []string
	for name, rt := range h.Routers {
		where := "router " + name
		svc, ok := h.Services[rt.Service]
		if !ok {
			p.add("%s: service %q is not defined", where, rt.Service)
			continue
		}
		protected := false
		for _, m := range rt.Middlewares {
			mw, ok := h.Middlewares[m]
			if !ok {
				p.add("%s: middleware %q is not defined", where, m)
			}
			protected = protected || mw.ForwardAuth != nil
		}
		toAdmin := false
		for _, s := range svc.LoadBalancer.Servers {
			u, err := url.Parse(s.URL)
			if err != nil {
				p.add("%s: server %q: %v", where, s.URL, err)
				continue
			}
			if n, _ := strconv.Atoi(u.Port()); int32(n) == want.Admin && isLoopback(u.Hostname()) {
				toAdmin = true
			}
		}
		switch {
		case toAdmin && protected:
			p.add("%s: key management goes through forwardAuth; the admin authenticates it itself", where)
		case toAdmin:
			adminRules = append(adminRules, rt.Rule)
		case !protected:
			p.add("%s: reaches service %s without a forwardAuth middleware", where, rt.Service)
		}
	}
	all := strings.Join(adminRules, " ")
	for _, path := range []string{"/api/v1/api-keys", "/api/v1/projects"} {
		if !strings.Contains(all, path) {
			p.add("no router sends %s key management to the admin (127.0.0.1:%d)", path, want.Admin)
		}
	}
	return p
}

func TestTraefikFileExample(t *testing.T) {
	cfg, err := loadTraefikFile(loadFile(t, traefikFileYAML))
	if err != nil {
		t.Fatalf("examples/traefik/dynamic.yaml: %v", err)
	}
	if len(cfg.HTTP.Routers) == 0 || len(cfg.HTTP.Middlewares) == 0 {
		t.Fatalf("examples/traefik/dynamic.yaml: no routers or middlewares")
	}
	reportProblems(t, "examples/traefik/dynamic.yaml", checkTraefikFile(cfg, codePorts(t)))
}

func TestTraefikFileDriftIsReported(t *testing.T) {
	y := string(loadFile(t, traefikFileYAML))
	for name, tc := range map[string]struct {
		old, new string
		ports    func(ports) ports
		expect   string
	}{
		"code moves the HTTP port":  {ports: func(p ports) ports { p.HTTP = 7001; return p }, expect: "want 127.0.0.1:7001"},
		"code moves the admin port": {ports: func(p ports) ports { p.Admin = 7002; return p }, expect: "without a forwardAuth middleware"},
		"address port":              {old: "127.0.0.1:9192/auth", new: "127.0.0.1:9191/auth", expect: "address 127.0.0.1:9191"},
		"app unprotected":           {old: "middlewares: [apikey-auth]", new: "middlewares: []", expect: "router app: reaches service app without"},
		"unknown field":             {old: "trustForwardHeader: false", new: "trustForwardHeaders: false", expect: "decode"},
	} {
		t.Run(name, func(t *testing.T) {
			doc := y
			if tc.old != "" {
				doc = strings.Replace(y, tc.old, tc.new, 1)
				if doc == y {
					t.Fatalf("%q not found", tc.old)
				}
			}
			p := codePorts(t)
			if tc.ports != nil {
				p = tc.ports(p)
			}
			cfg, err := loadTraefikFile([]byte(doc))
			var got []string
			if err != nil {
				got = []string{"decode: " + err.Error()}
			} else {
				got = checkTraefikFile(cfg, p)
			}
			if !problemsContain(got, tc.expect) {
				t.Fatalf("no problem mentions %q; got:\n%s", tc.expect, strings.Join(got, "\n"))
			}
		})
	}
}
