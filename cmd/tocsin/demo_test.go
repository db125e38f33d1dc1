package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tocsin-alert/tocsin/gateway"
	"github.com/tocsin-alert/tocsin/internal/testenv"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, out *syncBuffer, what string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Count(out.String(), what) >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("demo output lacks %d× %q:\n%s", n, what, out.String())
}

// startDemo runs the demo on a free port with args (default: no console),
// waits until it has printed its walkthrough, and stops it when the test
// ends, failing the test if it does not stop cleanly within 15 s.
func startDemo(t *testing.T, args ...string) (addr string, out *syncBuffer) {
	t.Helper()
	addr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	if !slices.Contains(args, "--console") {
		args = append(args, "--console", "off")
	}
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- runDemo(ctx, append([]string{"--listen", addr, "--log-level", "error"}, args...), out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo = %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("demo did not stop")
		}
	})
	waitFor(t, out, "centre receives appears below", 1)
	return addr, out
}

// The demo as `make demo` runs it (in-process Redis stand-in and broker): an
// alert sounds the school's three sirens and its retraction gives them
// all_clear. The console is down the whole time (its port is taken): an
// outage of the console never blocks an alert or a retraction.
func TestDemoWalkthrough(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr, out := startDemo(t, "--console", taken.Addr().String())
	if strings.Contains(out.String(), "Console:") {
		t.Fatalf("the console claims to serve on a taken port:\n%s", out.String())
	}

	post := func(path, key, body string) map[string]any {
		req, _ := http.NewRequest("POST", "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		if resp.StatusCode != 202 {
			t.Fatalf("POST %s = %d %v", path, resp.StatusCode, m)
		}
		return m
	}
	a := post("/v1/alerts", demoDispatchKey, `{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","headline":"Amokalarm","zones":["soest-school"]}`)
	waitFor(t, out, "← alarm", 3)
	waitFor(t, out, "← WARNUNG: Amokalarm", 4) // 2 SMS + 1 call in German (calls are paced at 2/s), the halls' PA
	waitFor(t, out, "← WARNING: Amokalarm", 3) // the English speaker's SMS and call, the gym's PA
	waitFor(t, out, "school-halls via school-pa   ", 1)
	waitFor(t, out, "school-gym via gym-pa", 1)
	waitFor(t, out, "← CAP Alert: Amokalarm", 1)
	time.Sleep(200 * time.Millisecond) // let the acks land
	post("/v1/alerts/"+a["id"].(string)+"/retract", demoOperatorKey, `{"reason":"false_alarm"}`)
	waitFor(t, out, "← all_clear", 3)
	waitFor(t, out, "← WARNUNG: Amokalarm", 4)      // 2 SMS + 1 call in German, the halls' PA
	waitFor(t, out, "← ENTWARNUNG: Die Warnung", 4) // and their false-alarm notices
	waitFor(t, out, "← ALL CLEAR: The warning", 3)  // the English speaker's SMS and call, the gym's PA
	waitFor(t, out, "← CAP Cancel", 1)
	waitFor(t, out, "← CAP Update: ENTWARNUNG", 1)
	// One timeline in the configuration's zone, as the messages give times
	// ("… von 16:44"): the lines' clock is Berlin's, not the machine's.
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^(\d\d:\d\d):\d\d\.\d{3}  cap   \S+\s+← CAP Cancel: (.*)$`).FindStringSubmatch(out.String())
	now := time.Now()
	if !strings.Contains(out.String(), "at Europe/Berlin time as in the messages") || line == nil ||
		(line[1] != now.In(berlin).Format("15:04") && line[1] != now.Add(-time.Minute).In(berlin).Format("15:04")) ||
		!strings.Contains(line[2], line[1]) && !strings.Contains(line[2], minuteBefore(line[1])) {
		t.Errorf("the Cancel's line %q: want Berlin's time, the time its text gives, and the header saying so", line)
	}
	if strings.Contains(out.String(), "townhall") {
		t.Fatalf("a town hall siren was reached:\n%s", out.String())
	}

	// Step 4 of the walkthrough: the amok button, signed with its key, on the
	// broker the demo printed.
	m := regexp.MustCompile(`mosquitto_pub -h (\S+) -p (\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the walkthrough lacks the mosquitto_pub line:\n%s", out.String())
	}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + m[1] + ":" + m[2]).SetClientID("demo-test-button"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to the demo's broker: %v", tok.Error())
	}
	defer c.Disconnect(100)
	tr := gateway.Trigger{Trigger: "amok-button", Zone: "soest-school", EventID: fmt.Sprintf("btn-%d", time.Now().UnixNano()), Timestamp: time.Now().UTC().Format(time.RFC3339)}
	tr.HMAC = gateway.TriggerMAC([]byte(demoButtonKey), tr)
	b, _ := json.Marshal(tr)
	c.Publish("tocsin/v1/trigger/school-amok-button", 1, false, b).WaitTimeout(5 * time.Second)
	waitFor(t, out, "← WARNUNG: Amokalarm (Taster)", 1) // the halls' PA
	waitFor(t, out, "← alarm", 6)                       // the three sirens once more
}

// TestDemoFourEyes is step 5 of the demo's walkthrough over HTTP, as a
// newcomer follows it: both people enrol with the invites the demo printed
// and TOTP codes from `tocsin demo code`, Anna drafts from the template and
// submits (nothing sounds), Ben approves the digest he saw, the alert reaches
// the sirens, Anna retracts alone with her session token through `tocsin
// retract --follow`, GET /v1/audit names who did what, and the printed
// `tocsin audit verify` command checks the chain.
func TestDemoFourEyes(t *testing.T) {
	addr, out := startDemo(t, "--console", "127.0.0.1:0")
	printed := func(re string) []string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("the walkthrough lacks %s:\n%s", re, out.String())
		}
		return m
	}
	invites := map[string]string{"anna": printed(`ANNA_INVITE=(\S+)`)[1], "ben": printed(`BEN_INVITE=(\S+)`)[1]}

	call := func(method, path, token, body string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		if resp.StatusCode != want {
			t.Fatalf("%s %s = %d %v, want %d", method, path, resp.StatusCode, m, want)
		}
		return m
	}
	code := func(secret string, step int) string {
		t.Helper()
		var b bytes.Buffer
		args := []string{secret}
		if step != 0 {
			args = append(args, "--step", fmt.Sprint(step))
		}
		if err := demoCodeCmd(args, &b); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(b.String())
	}
	// Enrolment takes the code before now, sign-in now's: each step once.
	signIn := func(id string) string {
		r := call("POST", "/v1/enrol", "", fmt.Sprintf(`{"token":%q,"password":%q}`, invites[id], demoPassword(id)), 200)
		secret, _ := r["secret"].(string)
		call("POST", "/v1/enrol", "", fmt.Sprintf(`{"token":%q,"code":%q}`, invites[id], code(secret, -1)), 200)
		r = call("POST", "/v1/session", "", fmt.Sprintf(`{"operator":%q,"password":%q,"code":%q}`, id, demoPassword(id), code(secret, 0)), 201)
		return r["token"].(string)
	}
	anna := signIn("anna")

	tm := call("GET", "/v1/templates", anna, "", 200)["templates"].([]any)[0].(map[string]any)
	if tm["id"] != "school-amok" || fmt.Sprint(tm["counts"]) != "map[dispatch:1 pa:2 siren:3 sms:3 voice:2]" {
		t.Fatalf("template: %v", tm)
	}
	d := call("POST", "/v1/drafts", anna, `{"template":"school-amok","status":"actual"}`, 201)
	id := d["id"].(string)
	if d["package"].(map[string]any)["retraction"] == nil {
		t.Fatalf("draft without the template's retraction texts: %v", d)
	}
	// The CAP message the dispatch centre would get, shown before release.
	centres := call("GET", "/v1/drafts/"+id+"/cap", anna, "", 200)["centres"].([]any)
	if len(centres) != 1 || !strings.Contains(centres[0].(map[string]any)["xml"].(string), "<event>Amok</event>") {
		t.Fatalf("CAP preview: %v", centres)
	}
	if d = call("POST", "/v1/drafts/"+id+"/submit", anna, "", 200); d["state"] != "pending" || d["needed"] != float64(1) {
		t.Fatalf("submitted: %v", d)
	}
	// Anna cannot approve her own alert.
	call("POST", "/v1/drafts/"+id+"/approve", anna, `{"digest":"`+d["digest"].(string)+`"}`, 403)
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(out.String(), "(alert "+id+")") {
		t.Fatalf("a pending alert reached a siren:\n%s", out.String())
	}

	ben := signIn("ben")
	digest := call("GET", "/v1/drafts/"+id, ben, "", 200)["digest"].(string)
	if d = call("POST", "/v1/drafts/"+id+"/approve", ben, `{"digest":"`+digest+`"}`, 200); d["state"] != "live" {
		t.Fatalf("approved: %v", d)
	}
	waitFor(t, out, "← alarm (alert "+id+")", 3)
	waitFor(t, out, "← WARNING: Amok alarm at the education centre", 1) // the English speaker, in the template's English

	// Anna retracts alone, with her session token as TOCSIN_KEY.
	t.Setenv("TOCSIN_URL", "http://"+addr)
	t.Setenv("TOCSIN_KEY", anna)
	var follow bytes.Buffer
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	if err := runRetract(rctx, []string{id, "--reason", "false_alarm", "--follow"}, &follow); err != nil {
		t.Fatalf("retract --follow: %v\n%s", err, follow.String())
	}
	for _, want := range []string{"siren    [####################] retracted 3/3", "pa       [####################] retracted 2/2"} {
		if !strings.Contains(follow.String(), want) {
			t.Errorf("retract --follow lacks %q:\n%s", want, follow.String())
		}
	}
	waitFor(t, out, "← all_clear (alert "+id+")", 3)
	waitFor(t, out, "← FEHLALARM: Der Amokalarm am Bildungszentrum", 1)
	waitFor(t, out, "← FALSE ALARM: The amok alarm at the education centre", 1)

	var seen []string
	for _, e := range call("GET", "/v1/audit?limit=50", anna, "", 200)["entries"].([]any) {
		en := e.(map[string]any)["entry"].(map[string]any)
		if en["subject"] == id {
			seen = append(seen, fmt.Sprint(en["kind"], " by ", en["actor"]))
		}
	}
	got := strings.Join(seen, "\n")
	for _, want := range []string{"draft.created by operator:anna", "draft.submitted by operator:anna", "draft.approved by operator:ben",
		"draft.released by operator:ben", "alert.retracted by operator:anna", "draft.retracted by operator:anna"} {
		if !strings.Contains(got, want) {
			t.Errorf("GET /v1/audit about %s lacks %q:\n%s", id, want, got)
		}
	}

	// The printed verify command checks the chain: archive, checkpoint, Redis tail.
	v := printed(`audit verify --dir (\S+) --redis (\S+) --prefix (\S+) \\\s+--key (\S+) --show`)
	var vout bytes.Buffer
	auditOut = &vout
	defer func() { auditOut = os.Stdout }()
	// Once the keeper's next round has checkpointed the story, every step of
	// it shows as verified.
	eventually(t, 3*demoAuditPoll, "the story's entries verified by a checkpoint", func() bool {
		vout.Reset()
		if err := auditVerify([]string{"--dir", v[1], "--redis", v[2], "--prefix", v[3], "--key", v[4], "--show", id}); err != nil {
			t.Fatalf("audit verify: %v\n%s", err, vout.String())
		}
		return strings.Contains(vout.String(), "alert.retracted") && !strings.Contains(vout.String(), "[not yet checkpointed]")
	})
	for _, want := range []string{"audit: chain verified to entry", "draft.created", "operator:anna", "draft.approved", "operator:ben", "alert.accepted", "alert.retracted"} {
		if !strings.Contains(vout.String(), want) {
			t.Errorf("audit verify --show %s lacks %q:\n%s", id, want, vout.String())
		}
	}
}

// eventually polls cond every 100ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("after %v: %s", d, what)
}

// minuteBefore is the "15:04" clock time a minute before hm.
func minuteBefore(hm string) string {
	t, err := time.Parse("15:04", hm)
	if err != nil {
		return hm
	}
	return t.Add(-time.Minute).Format("15:04")
}
