package gateway_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/mod/sumdb/note"

	"github.com/tocsin-alert/tocsin/audit"
	"github.com/tocsin-alert/tocsin/gateway"
	"github.com/tocsin-alert/tocsin/internal/softkey"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
	"github.com/tocsin-alert/tocsin/operator"
)

// operatorsConfig: an author, two approvers (one also an author), a viewer
// and an admin; a template; school-panel's alerts held for approval;
// townhall alerts need two approvers.
const operatorsConfig = `
operators:
  - {id: anna, name: Anna Author, roles: [author], zones: ["*"]}
  - {id: ben, name: Ben Approver, roles: [approver], zones: ["*"]}
  - {id: carla, name: Carla Both, roles: [author, approver], zones: ["*"]}
  - {id: vic, name: Vic Viewer, roles: [viewer], zones: ["*"]}
  - {id: adam, name: Adam Admin, roles: [admin], zones: ["*"]}
release:
  approval_ttl: 3s
  rules:
    - {zones: [townhall], approvers: 2}
  principals: {school-panel: approval}
templates:
  - id: amok
    name: Amok at the school
    event: Amok
    severity: Extreme
    urgency: Immediate
    headline: Amokalarm Schule
    language: de
    zones: [school]
    channels: [siren]
    retraction:
      - {key: false_alarm, language: de, text: "Fehlalarm: {headline}"}
`

// person is a signed-in operator in a test.
type person struct {
	s      *stack
	id     string
	secret string
	token  string
}

// enrol invites, enrols and signs in id. TOTP codes: enrolment uses the
// step before now, sign-in now's, and one step-up the next (the replay
// guard takes each step once).
func enrol(t *testing.T, s *stack, id string) *person {
	t.Helper()
	ops := operator.New(s.rdb, s.cfg.Redis.KeyPrefix, operator.Options{Known: func(x string) (string, bool) { return x, s.cfg.Operator(x) != nil }})
	inv, err := ops.Invite(context.Background(), id, "admin-cli")
	if err != nil {
		t.Fatal(err)
	}
	pw := id + "-correct-horse-battery"
	r := s.do("POST", "/v1/enrol", "", "application/json", fmt.Sprintf(`{"token":%q,"password":%q}`, inv, pw))
	if r.Code != 200 {
		t.Fatalf("enrol %s: %d %s", id, r.Code, r.Raw)
	}
	p := &person{s: s, id: id, secret: r.Body["secret"].(string)}
	if r := s.do("POST", "/v1/enrol", "", "application/json", fmt.Sprintf(`{"token":%q,"code":%q}`, inv, p.code(-30*time.Second))); r.Code != 200 {
		t.Fatalf("enrol %s, code: %d %s", id, r.Code, r.Raw)
	}
	r = s.do("POST", "/v1/session", "", "application/json", fmt.Sprintf(`{"operator":%q,"password":%q,"code":%q}`, id, pw, p.code(0)))
	if r.Code != 201 || !strings.HasPrefix(fmt.Sprint(r.Body["token"]), "tsn_") {
		t.Fatalf("sign-in %s: %d %s", id, r.Code, r.Raw)
	}
	p.token = r.Body["token"].(string)
	return p
}

func (p *person) code(offset time.Duration) string {
	c, err := totp.GenerateCode(p.secret, time.Now().Add(offset))
	if err != nil {
		panic(err)
	}
	return c
}

func (p *person) do(method, path, body string) response {
	return p.s.do(method, path, p.token, "application/json", body)
}

// sirenCommands counts the commands the fleet received for alert id.
func sirenCommands(s *stack, id string) int {
	n := 0
	for _, rc := range s.fleet.Received() {
		if rc.Cmd.AlertID == id {
			n++
		}
	}
	return n
}

// auditKinds are the kinds of the audit entries about subject, in order.
func auditKinds(t *testing.T, s *stack, subject string) []string {
	t.Helper()
	lines, err := s.rdb.LRange(context.Background(), audit.KeysFor(s.cfg.Redis.KeyPrefix).Log, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if dir := s.cfg.Audit.Dir; dir != "" { // what the keeper archived already
		old, err := audit.Recent(dir, math.MaxInt, func(string) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		if len(lines) > 0 && len(old) > 0 {
			first, _, _ := audit.ParseLine(lines[0])
			old = slices.DeleteFunc(old, func(l string) bool { n, _, _ := audit.ParseLine(l); return n >= first })
		}
		lines = append(old, lines...)
	}
	var kinds []string
	for _, l := range lines {
		_, body, err := audit.ParseLine(l)
		if err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		var e audit.Entry
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatal(err)
		}
		if e.Subject == subject {
			kinds = append(kinds, e.Kind+" by "+e.Actor)
		}
	}
	return kinds
}

// TestFourEyesStory is the operators' story: an author composes from a
// template and submits; the author, a viewer and a stale review cannot
// approve; an approver approves with the digest they saw and the alert goes
// live; the author alone retracts it; the audit tells every step with who.
func TestFourEyesStory(t *testing.T) {
	signer, verifier, err := note.GenerateKey(rand.Reader, "test-audit")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOCSIN_TEST_AUDIT_KEY", signer)
	dir := t.TempDir()
	s := newStack(t, stackOptions{extra: operatorsConfig + fmt.Sprintf("audit: {dir: %s, signing_key_env: TOCSIN_TEST_AUDIT_KEY, checkpoint_every: 5, archive_every: 200ms, checkpoint_interval: 1s, verifier_key: %q}\n", dir, verifier)})
	anna, ben, carla, vic := enrol(t, s, "anna"), enrol(t, s, "ben"), enrol(t, s, "carla"), enrol(t, s, "vic")

	r := anna.do("GET", "/v1/templates", "")
	if r.Code != 200 || !strings.Contains(r.Raw, `"counts":{"siren":3}`) {
		t.Fatalf("templates: %d %s", r.Code, r.Raw)
	}
	// Status is never guessed.
	if r := anna.do("POST", "/v1/drafts", `{"template":"amok"}`); r.Code != 400 || r.Body["field"] != "status" {
		t.Fatalf("draft without status: %d %s", r.Code, r.Raw)
	}
	r = anna.do("POST", "/v1/drafts", `{"template":"amok","status":"actual"}`)
	if r.Code != 201 || r.Body["state"] != "draft" {
		t.Fatalf("draft: %d %s", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	pkg := r.Body["package"].(map[string]any)
	if pkg["counts"].(map[string]any)["siren"] != float64(3) || pkg["retraction"] == nil {
		t.Fatalf("package without counts or retraction texts: %s", r.Raw)
	}
	if r := anna.do("POST", "/v1/drafts/"+id+"/submit", ""); r.Code != 200 || r.Body["state"] != "pending" {
		t.Fatalf("submit: %d %s", r.Code, r.Raw)
	}
	first := r.Body["digest"].(string)
	// Edited while pending: back to draft, a new digest, submitted again.
	r = carla.do("PUT", "/v1/drafts/"+id, `{"template":"amok","status":"actual","headline":"Amokalarm Schule Nord"}`)
	if r.Code != 200 || r.Body["state"] != "draft" || r.Body["digest"] == first || r.Body["editor"] != "carla" {
		t.Fatalf("edit: %d %s", r.Code, r.Raw)
	}
	// The approver sees what the edit changed.
	if got := fmt.Sprint(r.Body["changed"]); got != "[headline]" {
		t.Errorf("changed = %s, want [headline]", got)
	}
	digest := r.Body["digest"].(string)
	if r := anna.do("POST", "/v1/drafts/"+id+"/submit", ""); r.Code != 200 {
		t.Fatalf("submit again: %d %s", r.Code, r.Raw)
	}
	approve := func(p *person, digest string) response {
		return p.do("POST", "/v1/drafts/"+id+"/approve", `{"digest":"`+digest+`"}`)
	}
	refusals := []struct {
		name string
		r    response
		code int
		what string
	}{
		{"author is no approver", approve(anna, digest), 403, "approver"},
		{"approval by the last editor", approve(carla, digest), 403, "four-eyes"},
		{"viewer", approve(vic, digest), 403, "approver"},
		{"approval of the version before the edit", approve(ben, first), 409, "changed since you reviewed"},
		{"no digest", ben.do("POST", "/v1/drafts/"+id+"/approve", `{}`), 400, "digest"},
		{"API key approves", s.do("POST", "/v1/drafts/"+id+"/approve", operatorKey, "application/json", `{"digest":"`+digest+`"}`), 403, "signed-in approver"},
		{"return without reason", ben.do("POST", "/v1/drafts/"+id+"/return", `{}`), 400, "reason"},
	}
	for _, x := range refusals {
		if x.r.Code != x.code || !strings.Contains(x.r.Raw, x.what) {
			t.Errorf("%s: %d %s, want %d mentioning %q", x.name, x.r.Code, x.r.Raw, x.code, x.what)
		}
	}
	// An approver who composed an alert cannot approve it either.
	own := carla.do("POST", "/v1/drafts", `{"template":"amok","status":"actual"}`)
	carla.do("POST", "/v1/drafts/"+own.Body["id"].(string)+"/submit", "")
	if r := carla.do("POST", "/v1/drafts/"+own.Body["id"].(string)+"/approve", `{"digest":"`+own.Body["digest"].(string)+`"}`); r.Code != 403 || !strings.Contains(r.Raw, "author cannot approve") {
		t.Errorf("self-approval: %d %s", r.Code, r.Raw)
	}
	// Held: stored, visible, and nothing reached any siren.
	time.Sleep(300 * time.Millisecond)
	if n := sirenCommands(s, id); n != 0 {
		t.Fatalf("a pending alert reached %d sirens", n)
	}
	if r := s.get(id); r.Code != 404 {
		t.Fatalf("a pending alert is in the queue: %d %s", r.Code, r.Raw)
	}
	r = approve(ben, digest)
	if r.Code != 200 || r.Body["state"] != "live" || r.Body["alert"] != "/v1/alerts/"+id {
		t.Fatalf("approve: %d %s", r.Code, r.Raw)
	}
	eventually(t, 5*time.Second, "the approved alert sounds all 3 school sirens", func() bool { return sirenCommands(s, id) >= 3 })
	// The author retracts alone, in one step.
	if r := anna.do("POST", "/v1/alerts/"+id+"/retract", `{"reason":"false_alarm","note":"drill mix-up"}`); r.Code != 202 {
		t.Fatalf("retract: %d %s", r.Code, r.Raw)
	}
	if r := anna.do("GET", "/v1/drafts/"+id, ""); r.Body["state"] != "retracted" || r.Body["reasonBy"] != "anna" {
		t.Fatalf("draft after retraction: %s", r.Raw)
	}
	// The gateway verifies its own chain with the public key (the console's
	// audit page shows this).
	eventually(t, 5*time.Second, "GET /v1/audit/verify: the story verified by a checkpoint", func() bool {
		r := anna.do("GET", "/v1/audit/verify", "")
		return r.Code == 200 && r.Body["ok"] == true && r.Body["verifiedTo"].(float64) >= 10
	})
	got := strings.Join(auditKinds(t, s, id), "\n")
	// The chain verifies against the signed checkpoint the keeper writes
	// when the gateway stops, and holds every step of the story.
	s.cancel()
	tail, err := s.rdb.LRange(context.Background(), audit.KeysFor(s.cfg.Redis.KeyPrefix).Log, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := os.ReadFile(filepath.Join(dir, "latest.checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(dir, tail, string(cp), verifier)
	if err != nil || rep.VerifiedTo < 10 || rep.Unanchored != 0 {
		t.Fatalf("audit verify: %+v, %v", rep, err)
	}
	archived, _ := os.ReadFile(filepath.Join(dir, "audit-000001.log"))
	// A changed archived entry is named by the next verification.
	tampered := strings.Replace(string(archived), `"actor":"operator:ben"`, `"actor":"operator:eve"`, 1)
	if err := os.WriteFile(filepath.Join(dir, "audit-000001.log"), []byte(tampered), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(dir, tail, string(cp), verifier); err == nil || !strings.Contains(err.Error(), "entry ") {
		t.Fatalf("a changed entry verified: %v", err)
	}
	for _, kind := range []string{"config.loaded", "signin", "draft.approved", "alert.retracted"} {
		if !strings.Contains(string(archived), `"kind":"`+kind+`"`) {
			t.Errorf("archive lacks %s", kind)
		}
	}
	for _, want := range []string{"draft.created by operator:anna", "draft.submitted by operator:anna", "draft.edited by operator:carla",
		"draft.approved by operator:ben", "draft.released by operator:ben", "alert.accepted", "alert.retracted by operator:anna", "draft.retracted by operator:anna"} {
		if !strings.Contains(got, want) {
			t.Errorf("audit of %s lacks %q:\n%s", id, want, got)
		}
	}
}

// TestHeldAlertsNeverLeak: an API principal under the approval policy gets
// 202 pending; nothing reaches a siren until two approvals (townhall) of the
// same digest, each younger than approval_ttl; an expired approval does not
// count and release is refused.
func TestHeldAlertsNeverLeak(t *testing.T) {
	s := newStack(t, stackOptions{extra: strings.Replace(operatorsConfig, "principals: {school-panel: approval}", "principals: {leitstelle: approval}", 1)})
	ben, carla := enrol(t, s, "ben"), enrol(t, s, "carla")
	r := s.post(amok("townhall"))
	if r.Code != 202 || r.Body["state"] != "pending" || r.Body["needed"] != float64(2) {
		t.Fatalf("held alert: %d %s", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	d := ben.do("GET", "/v1/drafts/"+id, "")
	digest := d.Body["digest"].(string)
	if r := ben.do("POST", "/v1/drafts/"+id+"/approve", `{"digest":"`+digest+`"}`); r.Code != 200 || r.Body["state"] != "pending" || r.Body["validApprovals"] != float64(1) {
		t.Fatalf("first approval: %d %s", r.Code, r.Raw)
	}
	time.Sleep(3200 * time.Millisecond) // approval_ttl 3s
	if r := carla.do("POST", "/v1/drafts/"+id+"/approve", `{"digest":"`+digest+`"}`); r.Code != 200 || r.Body["state"] != "pending" || r.Body["validApprovals"] != float64(1) {
		t.Fatalf("second approval after the first expired: %d %s", r.Code, r.Raw)
	}
	if r := carla.do("POST", "/v1/drafts/"+id+"/release", `{"digest":"`+digest+`"}`); r.Code != 409 || !strings.Contains(r.Raw, "1 of 2") {
		t.Fatalf("release with an expired approval: %d %s", r.Code, r.Raw)
	}
	if n := sirenCommands(s, id); n != 0 {
		t.Fatalf("a held alert reached %d sirens", n)
	}
	if r := s.get(id); r.Code != 404 {
		t.Fatalf("a held alert is in the queue: %d %s", r.Code, r.Raw)
	}
	// Rejected with a reason: terminal, nothing queued, and nothing more is allowed.
	if r := ben.do("POST", "/v1/drafts/"+id+"/reject", `{"reason":"no incident at the town hall"}`); r.Code != 200 || r.Body["state"] != "rejected" {
		t.Fatalf("reject: %d %s", r.Code, r.Raw)
	}
	if r := carla.do("POST", "/v1/drafts/"+id+"/approve", `{"digest":"`+digest+`"}`); r.Code != 409 {
		t.Fatalf("approve a rejected alert: %d %s", r.Code, r.Raw)
	}
	time.Sleep(200 * time.Millisecond)
	if n := sirenCommands(s, id); n != 0 || s.get(id).Code != 404 {
		t.Fatalf("a rejected alert reached %d sirens", n)
	}
}

// TestApproversPaged: an alert held for approval pages the on-duty approver
// by SMS through Tocsin's own route, and reaches none of its own recipients.
func TestApproversPaged(t *testing.T) {
	tw := fakeTwilio(t, fake.TwilioOptions{})
	extra := strings.Replace(operatorsConfig, "principals: {school-panel: approval}", "principals: {leitstelle: approval}\n  page: [sms]", 1)
	extra = strings.Replace(extra, "{id: ben, name: Ben Approver, roles: [approver], zones: [\"*\"]}", "{id: ben, name: Ben Approver, roles: [approver], zones: [\"*\"], phone: \"+4915199999999\", on_duty: true}", 1)
	s := newStack(t, stackOptions{phones: 3, twilio: tw, extra: extra})
	r := s.post(`{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","headline":"Amokalarm","zones":["school"]}`)
	if r.Code != 202 || r.Body["state"] != "pending" {
		t.Fatalf("held: %d %s", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	eventually(t, 10*time.Second, "the on-duty approver is paged", func() bool {
		for _, m := range tw.Messages() {
			if m.To == "+4915199999999" && strings.Contains(m.Body, id) && strings.Contains(m.Body, "approval") {
				return true
			}
		}
		return false
	})
	for _, m := range tw.Messages() {
		if m.To != "+4915199999999" {
			t.Errorf("a held alert reached %s: %q", m.To, m.Body)
		}
	}
}

// TestTriggerHeldForApproval: a source under the approval policy has its
// trigger held (ack "held"), sounding nothing; its resend is a replay, not a
// second held alert; an approver releases it and the sirens sound.
func TestTriggerHeldForApproval(t *testing.T) {
	extra := strings.Replace(operatorsConfig, "principals: {school-panel: approval}", "sources: {school-button: approval}", 1)
	s := newStack(t, stackOptions{triggers: true, extra: extra})
	ben := enrol(t, s, "ben")
	p := newPanel(t, s)
	tr := trigger("school-button", "amok-button", "school", time.Now())
	p.send("school-button", tr)
	a := p.ack(tr.EventID)
	if a.Status != "held" || a.AlertID == "" {
		t.Fatalf("trigger under approval: %+v", a)
	}
	id := string(a.AlertID)
	p.send("school-button", tr) // QoS 1 resend
	time.Sleep(300 * time.Millisecond)
	if r := ben.do("GET", "/v1/drafts?state=pending", ""); strings.Count(r.Raw, `"author":"source:school-button"`) != 1 {
		t.Fatalf("pending drafts after a resend: %s", r.Raw)
	}
	if n := sirenCommands(s, id); n != 0 {
		t.Fatalf("a held trigger sounded %d sirens", n)
	}
	d := ben.do("GET", "/v1/drafts/"+id, "")
	if r := ben.do("POST", "/v1/drafts/"+id+"/approve", `{"digest":"`+d.Body["digest"].(string)+`"}`); r.Code != 200 || r.Body["state"] != "live" {
		t.Fatalf("approve: %d %s", r.Code, r.Raw)
	}
	eventually(t, 5*time.Second, "the released trigger alert sounds the sirens", func() bool { return sirenCommands(s, id) >= 3 })
}

// TestSecurityKeys: a signed-in person registers a security key (a software
// authenticator), signs in with password and key, steps up with the key and
// approves; a key from another origin and a wrong password are refused.
func TestSecurityKeys(t *testing.T) {
	const origin = "https://tocsin.example.test"
	s := newStack(t, stackOptions{extra: operatorsConfig + "public_url: " + origin + "\n"})
	carla, ben := enrol(t, s, "carla"), enrol(t, s, "ben")
	key := softkey.New(origin)
	r := ben.do("POST", "/v1/keys/options", "")
	if r.Code != 200 {
		t.Fatalf("key options: %d %s", r.Code, r.Raw)
	}
	resp, err := key.Create([]byte(r.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if r := ben.do("POST", "/v1/keys", `{"response":`+string(resp)+`}`); r.Code != 201 {
		t.Fatalf("register key: %d %s", r.Code, r.Raw)
	}
	signIn := func(k *softkey.Authenticator, password string) response {
		o := s.do("POST", "/v1/session/key/options", "", "application/json", `{"operator":"ben"}`)
		if o.Code != 200 {
			t.Fatalf("sign-in options: %d %s", o.Code, o.Raw)
		}
		a, err := k.Get([]byte(o.Raw))
		if err != nil {
			t.Fatal(err)
		}
		return s.do("POST", "/v1/session/key", "", "application/json", fmt.Sprintf(`{"operator":"ben","password":%q,"response":%s}`, password, a))
	}
	if r := signIn(key, "ben-wrong-password-123"); r.Code != 401 || !strings.Contains(r.Raw, "sign-in failed") {
		t.Fatalf("wrong password with the key: %d %s", r.Code, r.Raw)
	}
	// The same key material answering for another origin (a phishing page).
	phished := key.Clone()
	phished.Origin = "https://evil.example"
	if r := signIn(phished, "ben-correct-horse-battery"); r.Code != 401 {
		t.Fatalf("assertion for another origin: %d %s", r.Code, r.Raw)
	}
	r = signIn(key, "ben-correct-horse-battery")
	if r.Code != 201 {
		t.Fatalf("sign-in with the key: %d %s", r.Code, r.Raw)
	}
	ben.token = r.Body["token"].(string)
	if ben.token == "" {
		t.Fatal("no session from the key")
	}
	// Carla drafts and submits; Ben steps up with his key and approves.
	d := carla.do("POST", "/v1/drafts", `{"template":"amok","status":"actual"}`)
	id, digest := d.Body["id"].(string), d.Body["digest"].(string)
	carla.do("POST", "/v1/drafts/"+id+"/submit", "")
	o := ben.do("POST", "/v1/session/step-up/options", "")
	a, err := key.Get([]byte(o.Raw))
	if err != nil {
		t.Fatalf("step-up options %d %s: %v", o.Code, o.Raw, err)
	}
	if r := ben.do("POST", "/v1/session/step-up", `{"response":`+string(a)+`}`); r.Code != 200 {
		t.Fatalf("step-up with the key: %d %s", r.Code, r.Raw)
	}
	if r := ben.do("POST", "/v1/drafts/"+id+"/approve", `{"digest":"`+digest+`"}`); r.Code != 200 || r.Body["state"] != "live" {
		t.Fatalf("approve after a key step-up: %d %s", r.Code, r.Raw)
	}
	kinds := strings.Join(auditKinds(t, s, "ben"), "\n")
	for _, want := range []string{"webauthn.registered by operator:ben", "signin.failed by system", "signin by operator:ben", "stepup by operator:ben"} {
		if !strings.Contains(kinds, want) {
			t.Errorf("audit about ben lacks %q:\n%s", want, kinds)
		}
	}
}

// TestExerciseSelfApproval: an exercise may be approved by its own author
// and reaches only the targets that take drills (one siren of three); the
// same person's live alert may not be self-approved.
func TestExerciseSelfApproval(t *testing.T) {
	s := newStack(t, stackOptions{extra: operatorsConfig})
	carla := enrol(t, s, "carla")
	d := carla.do("POST", "/v1/drafts", `{"template":"amok","status":"exercise"}`)
	if d.Code != 201 || d.Body["package"].(map[string]any)["counts"].(map[string]any)["siren"] != float64(1) {
		t.Fatalf("exercise draft: %d %s (want 1 drill siren)", d.Code, d.Raw)
	}
	id := d.Body["id"].(string)
	carla.do("POST", "/v1/drafts/"+id+"/submit", "")
	if r := carla.do("POST", "/v1/drafts/"+id+"/approve", `{"digest":"`+d.Body["digest"].(string)+`"}`); r.Code != 200 || r.Body["state"] != "live" {
		t.Fatalf("self-approval of an exercise: %d %s", r.Code, r.Raw)
	}
	eventually(t, 5*time.Second, "the drill siren gets the exercise", func() bool { return sirenCommands(s, id) >= 1 })
	time.Sleep(300 * time.Millisecond)
	for _, rc := range s.fleet.Received() {
		if rc.Cmd.AlertID == id && (!rc.Cmd.Exercise || rc.Siren != sirenIDs("school", 3)[0]) {
			t.Errorf("exercise reached %s (exercise flag %v); only the drill siren may get it, marked", rc.Siren, rc.Cmd.Exercise)
		}
	}
}

// TestPendingDraftExpires: a pending alert whose expiry passes before anyone
// approves it expires by itself (audited by system), and can no longer be
// approved.
func TestPendingDraftExpires(t *testing.T) {
	s := newStack(t, stackOptions{extra: operatorsConfig})
	carla, ben := enrol(t, s, "carla"), enrol(t, s, "ben")
	d := carla.do("POST", "/v1/drafts", `{"template":"amok","status":"actual","expires":"`+time.Now().Add(1500*time.Millisecond).UTC().Format(time.RFC3339Nano)+`"}`)
	if d.Code != 201 {
		t.Fatalf("draft: %d %s", d.Code, d.Raw)
	}
	id := d.Body["id"].(string)
	carla.do("POST", "/v1/drafts/"+id+"/submit", "")
	eventually(t, 10*time.Second, "the pending draft expires by itself", func() bool {
		return strings.Contains(strings.Join(auditKinds(t, s, id), "\n"), "draft.expired by system")
	})
	if r := ben.do("POST", "/v1/drafts/"+id+"/approve", `{"digest":"`+d.Body["digest"].(string)+`"}`); r.Code != 409 {
		t.Fatalf("approve an expired draft: %d %s", r.Code, r.Raw)
	}
	if n := sirenCommands(s, id); n != 0 {
		t.Fatalf("an expired draft reached %d sirens", n)
	}
}

// TestQuarantinedTriggers: triggers quarantined by maintenance wait for a
// person. One is released as an alert in an author's name — through their
// policy, so it waits for an approver — exactly once; another is dismissed
// with a reason and can no longer be released; the audit names both.
func TestQuarantinedTriggers(t *testing.T) {
	s := newStack(t, stackOptions{triggers: true, extra: operatorsConfig})
	anna, ben := enrol(t, s, "anna"), enrol(t, s, "ben")
	p := newPanel(t, s)
	if r := s.do("PUT", "/v1/sources/school-button/maintenance", operatorKey, "application/json", `{"reason":"panel replaced","for":"1h"}`); r.Code != 200 {
		t.Fatalf("maintenance: %d %s", r.Code, r.Raw)
	}
	one, two := trigger("school-button", "amok-button", "school", time.Now()), trigger("school-button", "amok-button", "school", time.Now())
	for _, tr := range []gateway.Trigger{one, two} {
		p.send("school-button", tr)
		if a := p.ack(tr.EventID); a.Status != "quarantined" {
			t.Fatalf("trigger in maintenance: %+v", a)
		}
	}
	path := func(tr gateway.Trigger, what string) string {
		return "/v1/triggers/school-button/" + tr.EventID + "/" + what
	}
	if r := ben.do("POST", path(one, "release"), ""); r.Code != 403 {
		t.Errorf("release by an approver who is no author: %d %s", r.Code, r.Raw)
	}
	r := anna.do("POST", path(one, "release"), "")
	if r.Code != 201 || r.Body["state"] != "pending" || r.Body["author"] != "anna" {
		t.Fatalf("release as alert: %d %s", r.Code, r.Raw)
	}
	id, digest := r.Body["id"].(string), r.Body["digest"].(string)
	if r := anna.do("POST", path(one, "release"), ""); r.Code != 409 {
		t.Errorf("second release: %d %s", r.Code, r.Raw)
	}
	if n := sirenCommands(s, id); n != 0 {
		t.Fatalf("a released trigger sounded before its approval: %d", n)
	}
	if r := ben.do("POST", "/v1/drafts/"+id+"/approve", `{"digest":"`+digest+`"}`); r.Code != 200 || r.Body["state"] != "live" {
		t.Fatalf("approve: %d %s", r.Code, r.Raw)
	}
	eventually(t, 5*time.Second, "the released trigger sounds the school", func() bool { return sirenCommands(s, id) >= 3 })

	if r := s.do("POST", path(two, "dismiss"), operatorKey, "application/json", `{}`); r.Code != 400 || r.Body["field"] != "reason" {
		t.Errorf("dismiss without reason: %d %s", r.Code, r.Raw)
	}
	if r := s.do("POST", path(two, "dismiss"), operatorKey, "application/json", `{"reason":"test press by the technician"}`); r.Code != 200 {
		t.Fatalf("dismiss: %d %s", r.Code, r.Raw)
	}
	if r := anna.do("POST", path(two, "release"), ""); r.Code != 409 || !strings.Contains(r.Raw, "dismissed by operator") {
		t.Errorf("release after dismissal: %d %s", r.Code, r.Raw)
	}
	q := s.do("GET", "/v1/triggers?status=quarantined", operatorKey, "", "")
	if !strings.Contains(q.Raw, `"handled":"released by anna as `+id) || !strings.Contains(q.Raw, `"handled":"dismissed by operator: test press`) {
		t.Errorf("quarantined triggers do not say how they were handled: %s", q.Raw)
	}
	got := strings.Join(auditKinds(t, s, "school-button"), "\n")
	for _, want := range []string{"trigger.quarantined", "maintenance.started by principal:operator", "trigger.released by operator:anna", "trigger.dismissed by principal:operator"} {
		if !strings.Contains(got, want) {
			t.Errorf("audit of school-button lacks %q:\n%s", want, got)
		}
	}
}

// TestMaintenanceSecondPerson: a maintainer who started a source's
// maintenance cannot extend it or end it early alone; a second maintainer
// can (ending it with a fresh second factor).
func TestMaintenanceSecondPerson(t *testing.T) {
	extra := strings.Replace(operatorsConfig, "{id: anna, name: Anna Author, roles: [author], zones: [\"*\"]}", "{id: anna, name: Anna Author, roles: [author, maintainer], zones: [\"*\"]}", 1)
	extra = strings.Replace(extra, "{id: ben, name: Ben Approver, roles: [approver], zones: [\"*\"]}", "{id: ben, name: Ben Approver, roles: [approver, maintainer], zones: [\"*\"]}", 1)
	s := newStack(t, stackOptions{triggers: true, extra: extra})
	anna, ben := enrol(t, s, "anna"), enrol(t, s, "ben")
	const path = "/v1/sources/school-button/maintenance"
	if r := anna.do("PUT", path, `{"reason":"panel replaced","for":"1h"}`); r.Code != 200 {
		t.Fatalf("start: %d %s", r.Code, r.Raw)
	}
	if r := anna.do("PUT", path, `{"reason":"longer","for":"3h"}`); r.Code != 403 || r.Body["scope"] != "four_eyes" {
		t.Errorf("extend own maintenance: %d %s", r.Code, r.Raw)
	}
	if r := anna.do("DELETE", path, ""); r.Code != 403 || r.Body["scope"] != "four_eyes" {
		t.Errorf("end own maintenance early: %d %s", r.Code, r.Raw)
	}
	if r := ben.do("PUT", path, `{"reason":"panel replaced, cabling too","for":"3h"}`); r.Code != 200 || r.Body["by"] != "ben" {
		t.Fatalf("extend by a second person: %d %s", r.Code, r.Raw)
	}
	if r := anna.do("DELETE", path, ""); r.Code != 204 && r.Code != 200 {
		t.Fatalf("end by a second person: %d %s", r.Code, r.Raw)
	}
}
