package console

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/config"
)

// api stands in for the gateway's API in these tests of the console's own
// plumbing (the browser test in cmd/tocsin runs it against the real one):
// one session token, one alert, and a count of retractions.
type api struct {
	retracts atomic.Int32
	draft    atomic.Value // the last POST /v1/drafts body
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer tsn_test" && r.URL.Path != "/v1/session" {
		w.WriteHeader(401)
		io.WriteString(w, `{"title":"Missing or bad credentials","status":401}`)
		return
	}
	switch {
	case r.Method == "POST" && r.URL.Path == "/v1/session":
		w.WriteHeader(201)
		io.WriteString(w, `{"token":"tsn_test","operator":"anna"}`)
	case r.URL.Path == "/v1/session":
		io.WriteString(w, `{"operator":"anna","name":"Anna","roles":["author"],"zones":["*"]}`)
	case r.URL.Path == "/v1/alerts":
		io.WriteString(w, `{"alerts":[{"id":"a1","status":"actual","event":"Amok","state":"delivering","zones":["school"],"channels":{"siren":{"targets":3,"delivered":3}}}]}`)
	case r.Method == "POST" && r.URL.Path == "/v1/drafts":
		b, _ := io.ReadAll(r.Body)
		a.draft.Store(string(b))
		w.WriteHeader(201)
		io.WriteString(w, `{"id":"d1","state":"draft"}`)
	case r.URL.Path == "/v1/health/channels":
		io.WriteString(w, `{"channels":[{"kind":"siren","ready":0}],"breakers":{},"probes":[`+
			`{"kind":"siren","target":"school-north","ok":false,"at":"2026-12-02T10:15:00Z","since":"2026-12-02T10:00:00Z","detail":"siren school-north: no ack from device"},`+
			`{"kind":"twilio","target":"main","ok":true,"at":"2026-12-02T10:15:00Z","since":"2026-12-01T08:00:00Z"}]}`)
	case r.Method == "POST" && r.URL.Path == "/v1/alerts/a1/retract":
		a.retracts.Add(1)
		w.WriteHeader(202)
		io.WriteString(w, `{}`)
	default:
		io.WriteString(w, `{}`)
	}
}

func newConsole(t *testing.T) (*httptest.Server, *api, *http.Client) {
	t.Helper()
	a := &api{}
	c, err := New(Options{API: a, Config: &config.Config{TimeZone: "Europe/Berlin"}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	cl := &http.Client{Jar: jar}
	// Sign in.
	resp, err := cl.PostForm(srv.URL+"/login", url.Values{"operator": {"anna"}, "password": {"x"}, "code": {"123456"}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("sign-in: %v %v", resp, err)
	}
	resp.Body.Close()
	return srv, a, cl
}

var (
	csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	onceRe = regexp.MustCompile(`name="once" value="([^"]+)"`)
)

// dashboard fetches the dashboard and the retract form's tokens.
func dashboard(t *testing.T, srv *httptest.Server, cl *http.Client) (body string, hdr http.Header, csrf, once string) {
	t.Helper()
	resp, err := cl.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body = string(b)
	m, o := csrfRe.FindStringSubmatch(body), onceRe.FindAllStringSubmatch(body, -1)
	if m == nil || len(o) < 2 {
		t.Fatalf("dashboard without form tokens:\n%s", body)
	}
	return body, resp.Header, m[1], o[len(o)-1][1]
}

// Every answer forbids caching and framing and carries a CSP whose nonce
// the page's script uses; the session cookie is HttpOnly and SameSite=Strict.
func TestHeaders(t *testing.T) {
	srv, _, cl := newConsole(t)
	body, h, _, _ := dashboard(t, srv, cl)
	csp := h.Get("Content-Security-Policy")
	nonce := regexp.MustCompile(`'nonce-([^']+)'`).FindStringSubmatch(csp)
	if nonce == nil || !strings.Contains(body, `<script nonce="`+nonce[1]+`"`) || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q, page's script nonce not matching", csp)
	}
	if h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", h)
	}
	resp, _ := http.PostForm(srv.URL+"/login", url.Values{"operator": {"anna"}, "password": {"x"}, "code": {"1"}})
	// http.PostForm follows the redirect; look at the cookie header of the sign-in answer itself.
	resp.Body.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/login", strings.NewReader("operator=anna&password=x&code=1"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r2, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if c := r2.Header.Get("Set-Cookie"); !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Strict") {
		t.Errorf("session cookie %q", c)
	}
}

// A form without the session's CSRF token, or posted from another site,
// does nothing; the same form submitted twice acts once.
func TestFormsGuarded(t *testing.T) {
	srv, a, cl := newConsole(t)
	_, _, csrf, once := dashboard(t, srv, cl)
	post := func(v url.Values, origin string) int {
		req, _ := http.NewRequest("POST", srv.URL+"/alerts/a1/retract", strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(url.Values{"reason": {"false_alarm"}, "once": {once}}, ""); code != 403 {
		t.Errorf("without CSRF token: %d", code)
	}
	if code := post(url.Values{"reason": {"false_alarm"}, "csrf": {"forged"}, "once": {once}}, ""); code != 403 {
		t.Errorf("with a forged CSRF token: %d", code)
	}
	if code := post(url.Values{"reason": {"false_alarm"}, "csrf": {csrf}, "once": {once}}, "https://evil.example"); code != 403 {
		t.Errorf("from another origin: %d", code)
	}
	if n := a.retracts.Load(); n != 0 {
		t.Fatalf("%d retractions from refused forms", n)
	}
	for range 2 {
		if code := post(url.Values{"reason": {"false_alarm"}, "csrf": {csrf}, "once": {once}, "back": {"/"}}, srv.URL); code != 200 {
			t.Errorf("retract form: %d", code)
		}
	}
	if n := a.retracts.Load(); n != 1 {
		t.Fatalf("the same form twice made %d retractions, want 1", n)
	}
}

// An exercise console shows the exercise header on every page and composes
// no live alert.
func TestExerciseContext(t *testing.T) {
	a := &api{}
	cfg := &config.Config{Console: config.Console{Exercise: true}}
	c, err := New(Options{API: a, Config: cfg, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	cl := &http.Client{Jar: jar}
	for _, path := range []string{"/login", "/"} {
		resp, err := cl.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `class="exercise-banner"`) || !strings.Contains(string(b), "EXERCISE / ÜBUNG") {
			t.Errorf("%s without the exercise header", path)
		}
		if path == "/login" {
			cl.PostForm(srv.URL+"/login", url.Values{"operator": {"anna"}, "password": {"x"}, "code": {"1"}})
		}
	}
	resp, _ := cl.Get(srv.URL + "/")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf := csrfRe.FindStringSubmatch(string(b))[1]
	resp, err = cl.PostForm(srv.URL+"/compose", url.Values{"csrf": {csrf}, "once": {"o1"}, "template": {"t"}, "status": {"actual"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(b), "exercise context") {
		t.Errorf("a live alert composed in an exercise console: %d", resp.StatusCode)
	}
}

// Every label a template names exists in both languages: a missing one
// would render as an empty button or heading.
func TestLabelsComplete(t *testing.T) {
	re := regexp.MustCompile(`\.T\.([a-z_]+)`)
	names, _ := fs.Glob(files, "templates/*.html")
	for _, n := range names {
		b, _ := files.ReadFile(n)
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			for lang, ls := range labels {
				if _, ok := ls[m[1]]; !ok {
					t.Errorf("%s: label %q missing in %s", n, m[1], lang)
				}
			}
		}
	}
	for k := range labels["en"] {
		if _, ok := labels["de"][k]; !ok {
			t.Errorf("label %q has no German", k)
		}
	}
	for k := range labels["de"] {
		if _, ok := labels["en"][k]; !ok {
			t.Errorf("label %q has no English", k)
		}
	}
}

// Compose sends what the form holds: status, zones, channels, and the texts
// in further languages as edited.
func TestComposeSendsTheForm(t *testing.T) {
	srv, a, cl := newConsole(t)
	_, _, csrf, once := dashboard(t, srv, cl)
	form := url.Values{"csrf": {csrf}, "once": {once}, "template": {"amok"}, "status": {"exercise"},
		"zones": {"school"}, "channels": {"siren", "sms"}, "headline": {"Übung Amok"},
		"info_language": {"en", "pl"}, "info_event": {"Amok", "Amok"}, "info_headline": {"Drill amok", "Ćwiczenie"},
		"info_description": {"", ""}, "info_instruction": {"Stay inside", ""}}
	resp, err := cl.PostForm(srv.URL+"/compose", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got, _ := a.draft.Load().(string)
	for _, want := range []string{`"status":"exercise"`, `"zones":["school"]`, `"channels":["siren","sms"]`, `"headline":"Übung Amok"`,
		`{"language":"en","event":"Amok","headline":"Drill amok","instruction":"Stay inside"}`, `{"language":"pl","event":"Amok","headline":"Ćwiczenie"}`} {
		if !strings.Contains(got, want) {
			t.Errorf("POST /v1/drafts body lacks %s:\n%s", want, got)
		}
	}
}

// The dashboard answers "can we still alert?": every probe from
// GET /v1/health/channels, a failing one with since when and why.
func TestDashboardShowsProbes(t *testing.T) {
	srv, _, cl := newConsole(t)
	body, _, _, _ := dashboard(t, srv, cl)
	// Times in the configuration's zone (Europe/Berlin here: 10:00 UTC is 11:00).
	for _, want := range []string{`<li class="probe-fail breaker">siren school-north: `, "02.12. 11:00:00", "siren school-north: no ack from device", `<li class="probe-ok">twilio main: `} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
}
