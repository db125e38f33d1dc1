package gateway_test

import (
	"strings"
	"testing"
	"time"
)

// TestAlertRequestsRejected checks each class of bad request: the status, the
// problem+json body, and that it names the field or the scope at fault.
func TestAlertRequestsRejected(t *testing.T) {
	s := newStack(t, stackOptions{})
	good := `{"status":"actual","event":"Fire","severity":"Severe","urgency":"Immediate","zones":["school"]}`
	tests := []struct {
		name, key, ctype, body string
		code                   int
		field, scope, detail   string
	}{
		{"no credentials", "", "application/json", good, 401, "", "", "Authorization"},
		{"unknown key", "not-a-real-key-0000000", "application/json", good, 401, "", "", "unknown API key"},
		{"wrong media type", dispatchKey, "text/plain", good, 415, "", "", "application/json"},
		{"CAP that is not CAP 1.2", dispatchKey, "application/cap+xml", "<alert/>", 400, "alert", "", "namespace"},
		{"neither JSON nor CAP", dispatchKey, "text/plain", "hello", 415, "", "", "application/cap+xml"},
		{"malformed JSON", dispatchKey, "application/json", `{"status":`, 400, "", "", "malformed"},
		{"unknown field", dispatchKey, "application/json", `{"status":"actual","colour":"red"}`, 400, "colour", "", "unknown field"},
		{"wrong type", dispatchKey, "application/json", `{"status":"actual","zones":"school"}`, 400, "zones", "", "array"},
		{"trailing data", dispatchKey, "application/json", good + `{}`, 400, "", "", "trailing"},
		{"headline not UTF-8", dispatchKey, "application/json", strings.Replace(good, `"zones"`, "\"headline\":\"Amokalarm Geb\xe4ude\",\"zones\"", 1), 400, "headline", "", "UTF-8"},
		{"zone not UTF-8", dispatchKey, "application/json", strings.Replace(good, `["school"]`, "[\"school\",\"sch\xf6ol\"]", 1), 400, "zones[1]", "", "UTF-8"},
		{"missing status", dispatchKey, "application/json", `{"event":"Fire","severity":"Severe","urgency":"Immediate","zones":["school"]}`, 400, "status", "", "required"},
		{"bad status", dispatchKey, "application/json", strings.Replace(good, `"actual"`, `"real"`, 1), 400, "status", "", "real"},
		{"missing event", dispatchKey, "application/json", strings.Replace(good, `"Fire"`, `""`, 1), 400, "event", "", "required"},
		{"bad severity", dispatchKey, "application/json", strings.Replace(good, `"Severe"`, `"Huge"`, 1), 400, "severity", "", "Extreme"},
		{"bad urgency", dispatchKey, "application/json", strings.Replace(good, `"Immediate"`, `"Now"`, 1), 400, "urgency", "", "Immediate"},
		{"no zones", dispatchKey, "application/json", strings.Replace(good, `["school"]`, `[]`, 1), 400, "zones", "", "required"},
		{"unknown zone", dispatchKey, "application/json", strings.Replace(good, `["school"]`, `["school","mars"]`, 1), 400, "zones[1]", "", "mars"},
		{"bad channel", dispatchKey, "application/json", strings.Replace(good, `"zones"`, `"channels":["pigeon"],"zones"`, 1), 400, "channels[0]", "", "pigeon"},
		{"past expiry", dispatchKey, "application/json", strings.Replace(good, `"zones"`, `"expires":"2001-01-01T00:00:00Z","zones"`, 1), 400, "expires", "", "future"},
		{"Cancel as JSON", dispatchKey, "application/json", strings.Replace(good, `"zones"`, `"msgType":"Cancel","zones"`, 1), 400, "msgType", "", "retract"},
		{"zone outside scope", buildingKey, "application/json", strings.Replace(good, `["school"]`, `["townhall"]`, 1), 403, "", "zones", "townhall"},
		{"severity above scope", buildingKey, "application/json", strings.Replace(good, `"Severe"`, `"Extreme"`, 1), 403, "", "max_severity", "Severe"},
		{"status outside scope", buildingKey, "application/json", strings.Replace(good, `"actual"`, `"exercise"`, 1), 403, "", "statuses", "exercise"},
		{"too large", dispatchKey, "application/json", `{"status":"actual","description":"` + strings.Repeat("x", 70000) + `"}`, 413, "", "", "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.do("POST", "/v1/alerts", tt.key, tt.ctype, tt.body)
			if r.Code != tt.code {
				t.Fatalf("POST = %d %s, want %d", r.Code, r.Raw, tt.code)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q, want application/problem+json", ct)
			}
			if r.Body["status"] != float64(tt.code) || r.Body["type"] == "" || r.Body["title"] == "" {
				t.Errorf("problem body = %s, want type, title and status %d", r.Raw, tt.code)
			}
			if tt.field != "" && r.Body["field"] != tt.field {
				t.Errorf("field = %v, want %q (%s)", r.Body["field"], tt.field, r.Raw)
			}
			if tt.scope != "" && r.Body["scope"] != tt.scope {
				t.Errorf("scope = %v, want %q (%s)", r.Body["scope"], tt.scope, r.Raw)
			}
			if d, _ := r.Body["detail"].(string); !strings.Contains(d, tt.detail) {
				t.Errorf("detail = %q, want it to mention %q", d, tt.detail)
			}
			if tt.code == 401 && r.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
	// Nothing above was stored.
	if r := s.do("GET", "/v1/alerts", dispatchKey, "", ""); r.Code != 200 || len(r.Body["alerts"].([]any)) != 0 {
		t.Fatalf("GET /v1/alerts = %d %s, want no alerts", r.Code, r.Raw)
	}
}

func TestRetractRequestsRejected(t *testing.T) {
	s := newStack(t, stackOptions{})
	r := s.post(amok())
	if r.Code != 202 {
		t.Fatalf("POST = %d %s", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	for _, tt := range []struct {
		name, key, id, body string
		code                int
		field, scope        string
	}{
		{"no reason", operatorKey, id, `{}`, 400, "reason", ""},
		{"bad reason", operatorKey, id, `{"reason":"oops"}`, 400, "reason", ""},
		{"may not retract", buildingKey, id, `{"reason":"false_alarm"}`, 403, "", "retract"},
		{"unknown alert", operatorKey, "nope", `{"reason":"false_alarm"}`, 404, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := s.do("POST", "/v1/alerts/"+tt.id+"/retract", tt.key, "application/json", tt.body)
			if r.Code != tt.code || r.Body["field"] != nilIfEmpty(tt.field) || r.Body["scope"] != nilIfEmpty(tt.scope) {
				t.Fatalf("retract = %d %s; want %d field %q scope %q", r.Code, r.Raw, tt.code, tt.field, tt.scope)
			}
		})
	}
	if r := s.retract(id, "false_alarm"); r.Code != 202 {
		t.Fatalf("retract = %d %s, want 202", r.Code, r.Raw)
	}
	if r := s.retract(id, "false_alarm"); r.Code != 409 {
		t.Fatalf("retract again = %d %s, want 409", r.Code, r.Raw)
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func TestDuplicatesAnswer200WithTheFirstID(t *testing.T) {
	s := newStack(t, stackOptions{})
	body := amok()
	first := s.post(body, "Idempotency-Key", "evt-1")
	if first.Code != 202 || first.Body["duplicate"] != false || first.Body["targets"] != float64(3) {
		t.Fatalf("first POST = %d %s; want 202, 3 targets", first.Code, first.Raw)
	}
	// The same key with the same body, and the same body without a key: both
	// duplicates, each answer naming the alert and the rule.
	for i, r := range []response{s.post(body, "Idempotency-Key", "evt-1"), s.post(body)} {
		rule := []string{"idempotency_key", "fingerprint"}[i]
		d, _ := r.Body["dedup"].(map[string]any)
		if r.Code != 200 || r.Body["duplicate"] != true || r.Body["id"] != first.Body["id"] || d["rule"] != rule || d["alert"] != first.Body["id"] || d["reason"] == "" {
			t.Fatalf("repeat POST = %d %s; want 200 duplicate of %v by %s", r.Code, r.Raw, first.Body["id"], rule)
		}
	}
	// The same key with another body is refused: a key names one request.
	if r := s.post(amok(), "Idempotency-Key", "evt-1"); r.Code != 422 || r.Body["field"] != "Idempotency-Key" {
		t.Fatalf("key reused for another alert = %d %s; want 422 naming Idempotency-Key", r.Code, r.Raw)
	}
}

// A principal over its alert rate gets 429 with Retry-After, never a
// silent drop; its first alerts of a burst all pass; retractions are never
// limited.
func TestAlertRateLimit(t *testing.T) {
	s := newStack(t, stackOptions{limit: "rate: 0.5, burst: 3"})
	var ids []string
	for i := range 3 {
		r := s.post(amok())
		if r.Code != 202 {
			t.Fatalf("alert %d of the burst = %d %s; want 202", i, r.Code, r.Raw)
		}
		ids = append(ids, r.Body["id"].(string))
	}
	r := s.post(amok())
	if r.Code != 429 || r.Header.Get("Retry-After") != "2" {
		t.Fatalf("alert over the rate = %d (Retry-After %q) %s; want 429, Retry-After 2", r.Code, r.Header.Get("Retry-After"), r.Raw)
	}
	for _, id := range ids {
		if r := s.retract(id, "false_alarm"); r.Code != 202 {
			t.Fatalf("retract over the rate = %d %s; want 202", r.Code, r.Raw)
		}
	}
}

// Soest: a false alarm, retracted, then the real alarm with the very same
// body. The real one is a new alert and the sirens sound again; its answer
// names the retracted alert it was not merged into.
func TestRealAlarmAfterRetractedFalseAlarmSounds(t *testing.T) {
	s := newStack(t, stackOptions{})
	body := `{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","headline":"Amokalarm","zones":["school"],"channels":["siren"]}`
	first := s.post(body)
	if first.Code != 202 {
		t.Fatalf("false alarm = %d %s", first.Code, first.Raw)
	}
	falseID := first.Body["id"].(string)
	eventually(t, 5*time.Second, "the false alarm delivered", func() bool { return s.counts(falseID, "siren")["delivered"] == float64(3) })
	if r := s.retract(falseID, "false_alarm"); r.Code != 202 {
		t.Fatalf("retract = %d %s", r.Code, r.Raw)
	}
	eventually(t, 5*time.Second, "all_clear 3/3", func() bool { return s.sirenCounts(falseID)["retracted"] == "3/3" })
	real := s.post(body)
	d, _ := real.Body["dedup"].(map[string]any)
	if real.Code != 202 || real.Body["id"] == falseID || d["rule"] != "retracted" || d["alert"] != falseID {
		t.Fatalf("real alarm after the false one = %d %s; want 202, a new alert, naming the retracted %s", real.Code, real.Raw, falseID)
	}
	realID := real.Body["id"].(string)
	eventually(t, 5*time.Second, "the real alarm sounds", func() bool { return s.counts(realID, "siren")["delivered"] == float64(3) })
	alarms := 0
	for _, rc := range s.fleet.Received() {
		if rc.Cmd.AlertID == realID && rc.Cmd.Signal == "alarm" && !rc.Repeat {
			alarms++
		}
	}
	if alarms != 3 {
		t.Fatalf("%d sirens got the real alarm, want 3", alarms)
	}
	// Escalation is no duplicate either: the same event at a higher urgency
	// on top of a live Severe alert is sent.
	sev := `{"status":"actual","event":"Gas","severity":"Severe","urgency":"Expected","zones":["school"],"channels":["siren"]}`
	if r := s.post(sev); r.Code != 202 {
		t.Fatalf("severe = %d %s", r.Code, r.Raw)
	}
	up := s.post(strings.Replace(sev, "Expected", "Immediate", 1))
	if d, _ := up.Body["dedup"].(map[string]any); up.Code != 202 || d["rule"] != "escalated" {
		t.Fatalf("escalation = %d %s; want 202 escalated", up.Code, up.Raw)
	}
}
