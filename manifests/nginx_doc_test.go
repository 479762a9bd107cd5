package manifests

import (
	"fmt"
	"strings"
	"testing"
)

const (
	nginxExample = "../examples/nginx/extauthz.conf"
	deployDoc    = "../docs/deploy.md"
	nginxSection = "### Through nginx"
)

// nginxDocBlock returns the first ```nginx block of the nginx section of
// docs/deploy.md, without its fences.
func nginxDocBlock(doc string) (string, error) {
	i := strings.Index(doc, "\n"+nginxSection+"\n")
	if i < 0 {
		return "", fmt.Errorf("no %q section", nginxSection)
	}
	section := doc[i+1+len(nginxSection):]
	if j := strings.Index(section, "\n### "); j >= 0 {
		section = section[:j]
	}
	const open = "\n```nginx\n"
	k := strings.Index(section, open)
	if k < 0 {
		return "", fmt.Errorf("%q has no ```nginx block", nginxSection)
	}
	block := section[k+len(open):]
	end := strings.Index(block, "\n```\n")
	if end < 0 {
		return "", fmt.Errorf("%q: the ```nginx block is not closed", nginxSection)
	}
	return block[:end+1], nil
}

// TestNginxExampleInDeployDoc: the block docs/deploy.md shows is
// examples/nginx/extauthz.conf as it is, which cmd/extauthz's TestNginx*
// run in a real nginx.
func TestNginxExampleInDeployDoc(t *testing.T) {
	block, err := nginxDocBlock(string(loadFile(t, deployDoc)))
	if err != nil {
		t.Fatalf("docs/deploy.md: %v", err)
	}
	if conf := string(loadFile(t, nginxExample)); block != conf {
		t.Fatalf("the nginx block of docs/deploy.md differs from examples/nginx/extauthz.conf: copy the file into the block\n--- doc\n%s\n--- file\n%s", block, conf)
	}
}

func TestNginxDocDriftIsReported(t *testing.T) {
	conf := string(loadFile(t, nginxExample))
	doc := "# x\n\n" + nginxSection + "\n\nprose\n\n```nginx\n" + conf + "```\n\n### Day-2 notes\n\n```nginx\nother\n```\n"
	if got, err := nginxDocBlock(doc); err != nil || got != conf {
		t.Fatalf("nginxDocBlock = %q, %v; want the file", got, err)
	}
	for name, d := range map[string]string{
		"no section":   strings.Replace(doc, nginxSection, "### Through Nginx", 1),
		"no block":     strings.Replace(doc, "```nginx\n"+conf, "```\n"+conf, 1),
		"not closed":   "\n" + nginxSection + "\n\n```nginx\n" + conf,
		"block edited": strings.Replace(doc, "proxy_set_header X-Auth-User-Id", "proxy_set_header X-Auth-User", 1),
	} {
		if got, err := nginxDocBlock(d); err == nil && got == conf {
			t.Errorf("%s: not reported", name)
		}
	}
}

// nginxLocations returns the directives of each location block of an
// nginx snippet, keyed by the location's argument ("/", "= /_extauthz"),
// comments dropped and white space collapsed.
func nginxLocations(conf string) (map[string][]string, error) {
	rest := nginxWithoutComments(conf)
	out := map[string][]string{}
	for {
		i := strings.Index(rest, "location ")
		if i < 0 {
			break
		}
		open := strings.IndexByte(rest[i:], '{')
		if open < 0 {
			return nil, fmt.Errorf("location without a block")
		}
		name := strings.Join(strings.Fields(rest[i+len("location "):i+open]), " ")
		body := rest[i+open+1:]
		end := strings.IndexByte(body, '}')
		if end < 0 || strings.IndexByte(body[:end], '{') >= 0 {
			return nil, fmt.Errorf("location %s: block not closed, or nested", name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("location %s twice", name)
		}
		var dirs []string
		for _, d := range strings.Split(body[:end], ";") {
			if d = strings.Join(strings.Fields(d), " "); d != "" {
				dirs = append(dirs, d)
			}
		}
		out[name] = dirs
		rest = body[end+1:]
	}
	return out, nil
}

// nginxWithoutComments drops every comment and joins the lines (the
// example has no '#' inside a quoted string).
func nginxWithoutComments(conf string) string {
	var b strings.Builder
	for _, line := range strings.Split(conf, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		b.WriteString(line)
		b.WriteByte(' ')
	}
	return b.String()
}

// checkNginxExample lists what the example lacks of what docs/security.md
// says nginx must do. Some of it (the Content-Length of the check, the
// ports) cannot be seen from outside by the end-to-end test.
func checkNginxExample(conf string, p ports) []string {
	var probs problems
	locs, err := nginxLocations(conf)
	if err != nil {
		return []string{err.Error()}
	}
	if code := nginxWithoutComments(conf); strings.Contains(code, "underscores_in_headers") || strings.Contains(code, "ignore_invalid_headers") {
		probs.add("changes nginx's handling of header names with '_'; keep the defaults")
	}
	identity := [][2]string{
		{"X-Auth-Key-Id", "key_id"}, {"X-Auth-Key-Prefix", "key_prefix"}, {"X-Auth-Scopes", "scopes"},
		{"X-Auth-Project-Id", "project_id"}, {"X-Auth-User-Id", "user_id"},
	}
	app := []string{"auth_request /_extauthz", "proxy_pass http://127.0.0.1:9000"}
	for _, h := range identity {
		app = append(app,
			fmt.Sprintf("auth_request_set $extauthz_%s $upstream_http_%s", h[1], strings.ReplaceAll(strings.ToLower(h[0]), "-", "_")),
			fmt.Sprintf("proxy_set_header %s $extauthz_%s", h[0], h[1]))
	}
	for _, h := range []string{"X-Api-Key", "Authorization", "X-Forwarded-Method", "X-Forwarded-Uri", "X-Original-Method", "X-Original-URI",
		"Forwarded", "X-Forwarded-Prefix", "X-Forwarded-Port", "X-Forwarded-Path"} {
		app = append(app, "proxy_set_header "+h+` ""`)
	}
	app = append(app, "proxy_set_header X-Forwarded-For $remote_addr", "proxy_set_header X-Real-IP $remote_addr",
		"proxy_set_header X-Forwarded-Host $host", "proxy_set_header X-Forwarded-Proto $scheme")
	check := []string{
		"internal",
		fmt.Sprintf("proxy_pass http://127.0.0.1:%d/auth", p.HTTP),
		"proxy_pass_request_body off",
		`proxy_set_header Content-Length ""`,
		"proxy_set_header X-Original-URI $request_uri",
		"proxy_set_header X-Original-Method $request_method",
		"proxy_set_header X-Forwarded-Host $host",
		"proxy_set_header X-Real-IP $remote_addr",
	}
	for _, h := range []string{"X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-For", "X-Forwarded-Proto"} {
		check = append(check, "proxy_set_header "+h+` ""`)
	}
	for _, l := range []struct {
		name string
		want []string
		not  []string
	}{
		{"/", app, nil},
		// The key must reach extauthz: it is inherited, never cleared.
		{"= /_extauthz", check, []string{"proxy_set_header X-Api-Key", "proxy_set_header Authorization", "proxy_pass_request_headers off"}},
	} {
		dirs, ok := locs[l.name]
		if !ok {
			probs.add("no location %s", l.name)
			continue
		}
		have := map[string]bool{}
		for _, d := range dirs {
			have[d] = true
		}
		for _, w := range l.want {
			if !have[w] {
				probs.add("location %s: no %q", l.name, w)
			}
		}
		for _, d := range dirs {
			for _, n := range l.not {
				if strings.HasPrefix(d, n) {
					probs.add("location %s: %q keeps the key from extauthz", l.name, d)
				}
			}
		}
	}
	return probs
}

func TestNginxExample(t *testing.T) {
	reportProblems(t, "examples/nginx/extauthz.conf", checkNginxExample(string(loadFile(t, nginxExample)), codePorts(t)))
}

func TestNginxExampleDriftIsReported(t *testing.T) {
	conf := string(loadFile(t, nginxExample))
	for name, tc := range map[string]struct {
		old, new string
		ports    func(ports) ports
		expect   string
	}{
		"code moves the HTTP port":  {ports: func(p ports) ports { p.HTTP = 7001; return p }, expect: "127.0.0.1:7001/auth"},
		"Content-Length kept":       {old: `proxy_set_header        Content-Length "";`, expect: "Content-Length"},
		"identity header missing":   {old: "proxy_set_header X-Auth-User-Id    $extauthz_user_id;", expect: "X-Auth-User-Id $extauthz_user_id"},
		"$uri instead":              {old: "X-Original-URI    $request_uri", new: "X-Original-URI    $uri", expect: "$request_uri"},
		"key cleared for the check": {old: "    internal;", new: "    internal;\n    proxy_set_header Authorization \"\";", expect: "keeps the key"},
		"underscores allowed":       {old: "location / {", new: "underscores_in_headers on;\nlocation / {", expect: "'_'"},
		"location renamed":          {old: "location = /_extauthz {", new: "location /_extauthz {", expect: "no location = /_extauthz"},
	} {
		t.Run(name, func(t *testing.T) {
			c := conf
			if tc.old != "" {
				if c = strings.Replace(conf, tc.old, tc.new, 1); c == conf {
					t.Fatalf("%q not found", tc.old)
				}
			}
			p := codePorts(t)
			if tc.ports != nil {
				p = tc.ports(p)
			}
			if got := checkNginxExample(c, p); !problemsContain(got, tc.expect) {
				t.Errorf("problems %q; want one containing %q", got, tc.expect)
			}
		})
	}
}
