package admin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/keystore/keystoretest"
)

func hashOf(raw string) string { return keystore.HashKey(raw).String() }

func ndjsonBody(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

func (e *testEnv) importNDJSON(token string, body any) response {
	e.t.Helper()
	return e.request("POST", "/api/v1/api-keys/import", token, body, "Content-Type", "application/x-ndjson")
}

// importResult decodes an import response strictly.
func importResult(t *testing.T, r response) ImportResponse {
	t.Helper()
	var res ImportResponse
	dec := json.NewDecoder(bytes.NewReader(r.raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("import response %s: %v", r.raw, err)
	}
	return res
}

func TestImport(t *testing.T) {
	e := newEnv(t, envConfig{})
	existing := e.createNexKey(testAdminToken, `{"name":"already here","scopes":["signals"]}`)
	rawA := "nex_" + strings.Repeat("A", 32)
	rawB := "nex_" + strings.Repeat("B", 32)
	rawC := "nex_" + strings.Repeat("C", 32)
	line := func(raw, extra string) string {
		return fmt.Sprintf(`{"hash":%q,"prefix":%q,"name":"imported","scopes":["signals"]%s}`, hashOf(raw), raw[:8], extra)
	}
	body := ndjsonBody(
		line(rawA, `,"createdAt":"2023-05-01T12:00:00Z","userId":"u1","projectId":"p1"`), // 1 imported
		line(rawB, ""),                     // 2 imported
		line(rawA, ""),                     // 3 skipped: repeated in the file
		line(existing["key"].(string), ""), // 4 skipped: already stored
		`{"hash": "abc", "prefix":`,        // 5 malformed JSON
		`{"hash":"xyz","prefix":"nex_xxxx","scopes":["signals"]}`, // 6 bad hash
		strings.TrimSuffix(line(rawC, ""), "}")+`,"color":"red"}`, // 7 unknown field
		"", // 8 blank: ignored
		`{"pad":"`+strings.Repeat("x", MaxImportLineBytes)+`"}`,                     // 9 too long
		strings.Replace(line(rawC, ""), `["signals"]`, `["signals","teleport"]`, 1), // 10 unknown scope
		line(rawC, `,"expiresAt":"2020-01-01T00:00:00Z"`)+"\r",                      // 11 imported (already expired), CRLF
		`[1,2,3]`, // 12 not an object
		`{"hash":"`+hashOf("x")+`","prefix":"","scopes":[]}`, // 13 several bad fields
	)
	// The last line has no newline: it still counts.
	body += line("nex_"+strings.Repeat("D", 32), "")
	r := e.expect(e.importNDJSON(testAdminToken, body), http.StatusOK, "import")
	res := importResult(t, r)
	if res.Imported != 4 || res.Skipped != 2 {
		t.Errorf("imported %d skipped %d; want 4 and 2 (%s)", res.Imported, res.Skipped, r.raw)
	}
	wantErrs := []struct {
		line int
		has  []string
	}{
		{5, []string{"malformed JSON"}},
		{6, []string{"hash"}},
		{7, []string{`unknown field "color"`}},
		{9, []string{"longer than"}},
		{10, []string{"scopes", "teleport"}},
		{12, []string{"object"}},
		{13, []string{"prefix", "scopes"}},
	}
	if len(res.Errors) != len(wantErrs) {
		t.Fatalf("errors = %+v; want lines %v", res.Errors, wantErrs)
	}
	for i, w := range wantErrs {
		got := res.Errors[i]
		if got.Line != w.line {
			t.Errorf("error %d on line %d; want line %d (%q)", i, got.Line, w.line, got.Error)
		}
		for _, s := range w.has {
			if !strings.Contains(got.Error, s) {
				t.Errorf("line %d error %q does not mention %q", got.Line, got.Error, s)
			}
		}
	}

	// The imported hash of a known raw key authorizes like a created one.
	if !e.keyValid(rawA) || !e.keyValid(rawB) {
		t.Errorf("imported keys are not valid")
	}
	lr, err := e.store.Lookup(keystore.HashKey(rawA))
	if err != nil {
		t.Fatal(err)
	}
	k := lr.Key
	if k.Prefix != "nex_AAAA" || k.UserID != "u1" || k.ProjectID != "p1" || k.Name != "imported" ||
		!k.CreatedAt.Equal(time.Date(2023, 5, 1, 12, 0, 0, 0, time.UTC)) || !uuidRE.MatchString(k.ID) {
		t.Errorf("imported record = %+v", k)
	}
	if e.keyValid(rawC) {
		t.Errorf("a key imported with a past expiresAt is valid")
	}
	// Importing the same file again imports nothing new.
	res = importResult(t, e.expect(e.importNDJSON(testAdminToken, body), http.StatusOK, "re-import"))
	if res.Imported != 0 || res.Skipped != 6 {
		t.Errorf("re-import: imported %d skipped %d; want 0 and 6", res.Imported, res.Skipped)
	}
	// Every import is in the audit log.
	events := e.expect(e.request("GET", "/api/v1/audit?limit=10000", testAdminToken, nil), http.StatusOK, "audit").array(t)
	imports := 0
	for _, ev := range events {
		if ev.(map[string]any)["action"] == "key.import" {
			imports++
		}
	}
	if imports != 4 {
		t.Errorf("audit has %d key.import events; want 4", imports)
	}

	for _, tc := range []struct {
		name, token, ct string
		want            int
	}{
		{"JSON content type", testAdminToken, "application/json", http.StatusUnsupportedMediaType},
		{"no content type", testAdminToken, "", http.StatusUnsupportedMediaType},
		{"user token", e.userToken("u1"), "application/x-ndjson", http.StatusForbidden},
		{"no token", "", "application/x-ndjson", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.request("POST", "/api/v1/api-keys/import", tc.token, body, "Content-Type", tc.ct)
			if r.status != tc.want {
				t.Errorf("status = %d %s; want %d", r.status, r.raw, tc.want)
			}
		})
	}
}

func TestImportChunksAndErrorCap(t *testing.T) {
	e := newEnv(t, envConfig{})
	var b strings.Builder
	const valid = ImportChunkSize + 500
	for i := range valid {
		raw := fmt.Sprintf("nex_%032d", i)
		fmt.Fprintf(&b, `{"hash":%q,"prefix":%q,"scopes":["agents"]}`+"\n", hashOf(raw), raw[:8])
		if i%2 == 0 { // a duplicate of a key from the previous chunk, or this one
			dup := fmt.Sprintf("nex_%032d", i/2)
			fmt.Fprintf(&b, `{"hash":%q,"prefix":%q,"scopes":["agents"]}`+"\n", hashOf(dup), dup[:8])
		}
	}
	for range MaxImportErrors + 234 {
		b.WriteString("not json\n")
	}
	res := importResult(t, e.expect(e.importNDJSON(testAdminToken, b.String()), http.StatusOK, "import"))
	if res.Imported != valid || res.Skipped != valid/2 {
		t.Errorf("imported %d skipped %d; want %d and %d", res.Imported, res.Skipped, valid, valid/2)
	}
	if len(res.Errors) != MaxImportErrors || res.ErrorsOmitted != 234 {
		t.Errorf("errors listed %d omitted %d; want %d and 234", len(res.Errors), res.ErrorsOmitted, MaxImportErrors)
	}
	if n, _ := e.store.Stats(e.clock.Now()); n.Active != valid {
		t.Errorf("store holds %d active keys; want %d", n.Active, valid)
	}
}

// TestImportOutlivesReadTimeout streams an import slower than the HTTP
// server's ReadTimeout: the handler moves the read deadline as the import
// progresses, so the import completes.
func TestImportOutlivesReadTimeout(t *testing.T) {
	e := newEnv(t, envConfig{})
	hs := httptest.NewUnstartedServer(e.srv)
	hs.Config.ReadTimeout = 300 * time.Millisecond
	hs.Start()
	defer hs.Close()
	pr, pw := io.Pipe()
	go func() {
		for batch := range 4 {
			time.Sleep(150 * time.Millisecond)
			for i := range ImportChunkSize {
				raw := fmt.Sprintf("nex_%032d", batch*ImportChunkSize+i)
				fmt.Fprintf(pw, `{"hash":%q,"prefix":%q,"scopes":["agents"]}`+"\n", hashOf(raw), raw[:8])
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", hs.URL+"/api/v1/api-keys/import", pr)
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := fmt.Sprintf(`"imported":%d`, 4*ImportChunkSize)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		t.Fatalf("slow import = %d %s; want 200 with %s", resp.StatusCode, body, want)
	}
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("y", 40)
	lr := newImportReader(strings.NewReader("a\r\n"+long+"\nbb\n\n"+long+long+"\nlast"), 32)
	type got struct {
		line    string
		n       int
		tooLong bool
	}
	var out []got
	for {
		line, tooLong, err := nextImportLine(lr, 32)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got{string(line), lr.Line(), tooLong})
	}
	want := []got{{"a", 1, false}, {"", 2, true}, {"bb", 3, false}, {"", 4, false}, {"", 5, true}, {"last", 6, false}}
	if fmt.Sprint(out) != fmt.Sprint(want) {
		t.Errorf("lines = %v; want %v", out, want)
	}
}

// TestImportLineLimit: the limit is MaxImportLineBytes without the line
// ending, LF or CRLF alike; a longer line is an error for that line alone.
func TestImportLineLimit(t *testing.T) {
	exact := strings.Repeat("x", MaxImportLineBytes)
	over := exact + "x"
	for _, tc := range []struct {
		name    string
		in      string
		tooLong []bool
	}{
		{"LF", exact + "\n" + over + "\nz\n", []bool{false, true, false}},
		{"CRLF", exact + "\r\n" + over + "\r\nz\r\n", []bool{false, true, false}},
		{"last line without newline", over, []bool{true}},
		{"far over", strings.Repeat(over, 3) + "\nz", []bool{true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lr := newImportReader(strings.NewReader(tc.in), MaxImportLineBytes)
			var got []bool
			for {
				line, tooLong, err := nextImportLine(lr, MaxImportLineBytes)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if !tooLong && len(line) > MaxImportLineBytes {
					t.Fatalf("line of %d bytes accepted", len(line))
				}
				got = append(got, tooLong)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.tooLong) {
				t.Errorf("too long = %v; want %v", got, tc.tooLong)
			}
		})
	}
}

// TestImport1M streams 1,000,000 generated lines through the HTTP endpoint
// from an io.Pipe and reports the peak RSS. It takes minutes, so it runs
// only with EXTAUTHZ_IMPORT_1M=1 (make bench or by hand, without -race):
//
//	EXTAUTHZ_IMPORT_1M=1 go test -run TestImport1M -v -timeout 30m ./admin/
func TestImport1M(t *testing.T) {
	if os.Getenv("EXTAUTHZ_IMPORT_1M") != "1" || testing.Short() {
		t.Skip("set EXTAUTHZ_IMPORT_1M=1 to import 1,000,000 lines")
	}
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("EXTAUTHZ_IMPORT_N")); err == nil && v > 0 {
		n = v
	}
	e := newEnv(t, envConfig{})
	e.logs = &keystoretest.LogBuffer{} // keep the log sink small
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 64<<10)
		for i := range n {
			raw := fmt.Sprintf("nex_%032d", i)
			fmt.Fprintf(bw, `{"hash":%q,"prefix":%q,"name":"bulk","scopes":["signals"],"userId":"u%d"}`+"\n", hashOf(raw), raw[:8], i%1000)
		}
		pw.CloseWithError(bw.Flush())
	}()
	runtime.GC()
	before := vmHWM(t)
	start := time.Now()
	r := e.expect(e.importNDJSON(testAdminToken, pr), http.StatusOK, "import 1M")
	elapsed := time.Since(start)
	res := importResult(t, r)
	if res.Imported != n || res.Skipped != 0 || len(res.Errors) != 0 {
		t.Fatalf("imported %d skipped %d errors %d; want %d, 0, 0", res.Imported, res.Skipped, len(res.Errors), n)
	}
	if !e.keyValid(fmt.Sprintf("nex_%032d", n-1)) {
		t.Errorf("last imported key not found")
	}
	fi, _ := os.Stat(e.store.Path())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("imported %d keys in %v (%.0f keys/s); store file %d MiB; VmHWM before %d MiB, after %d MiB; %s; Go heap in use %d MiB",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), fi.Size()>>20, before>>10, vmHWM(t)>>10, rssBreakdown(t), ms.HeapInuse>>20)
}

// vmHWM returns the peak resident set size in KiB from /proc/self/status.
func vmHWM(t *testing.T) int64 {
	return procStatus(t, "VmHWM")
}

func rssBreakdown(t *testing.T) string {
	return fmt.Sprintf("RssAnon %d MiB, RssFile %d MiB", procStatus(t, "RssAnon")>>10, procStatus(t, "RssFile")>>10)
}

func procStatus(t *testing.T, field string) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}
