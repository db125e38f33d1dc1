package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/config"
)

// FuzzAlertJSON: no body makes decoding and validation panic; whatever is
// accepted is a complete alert inside the principal's scopes.
func FuzzAlertJSON(f *testing.F) {
	cfg, err := config.Parse([]byte(`
zones: [{id: school}, {id: townhall}]
sirens: [{id: s1, zone: school, drills: true}]
principals:
  - {id: panel, kind: building, key_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8,
     scopes: {zones: [school], channels: [siren], max_severity: Severe, statuses: [actual, test]}}
`))
	if err != nil {
		f.Fatal(err)
	}
	g := New(Options{Config: cfg, Log: zerolog.Nop(), Adapters: map[alert.Kind]adapters.Adapter{alert.KindSiren: adapters.Func(nil)}})
	p := &cfg.Principals[0]
	for _, s := range []string{
		`{"status":"actual","event":"Fire","severity":"Severe","urgency":"Immediate","zones":["school"]}`,
		`{"status":"test","event":"Probe","severity":"Minor","urgency":"Past","zones":["school","school"],"channels":["siren"],"expires":"2030-01-01T00:00:00Z"}`,
		`{"status":"actual","event":"x","severity":"Extreme","urgency":"Immediate","zones":["townhall"]}`,
		`{"status":"exercise","msgType":"Cancel","event":"","zones":[]}`,
		`{"zones":[1,2],"headline":null}`, `[]`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, b []byte) {
		var req alertRequest
		if decodeJSON(b, &req) != nil {
			return
		}
		a, err := g.validate(&req, p, now)
		if err != nil {
			return
		}
		if a.Event == "" || len(a.Zones) == 0 || a.Severity > alert.SeveritySevere || !a.Expires.After(now) {
			t.Fatalf("accepted an incomplete alert: %+v", a)
		}
		for _, z := range a.Zones {
			if z != "school" {
				t.Fatalf("accepted zone %q outside the panel's scope", z)
			}
		}
	})
}

// FuzzTrigger: no payload makes the trigger decision panic, and no payload
// without the source's key gets past the signature check to the queue (the
// queue is absent here: reaching it would panic).
func FuzzTrigger(f *testing.F) {
	f.Setenv("TOCSIN_FUZZ_TRIGGER_KEY", "fuzz-trigger-key-000001")
	cfg, err := config.Parse([]byte(`
zones: [{id: school}]
sirens: [{id: s1, zone: school}]
triggers:
  sources: [{id: button, key_env: TOCSIN_FUZZ_TRIGGER_KEY, zones: [school]}]
  templates: [{trigger: amok-button, event: Amok, severity: Extreme, urgency: Immediate}]
`))
	if err != nil {
		f.Fatal(err)
	}
	g := New(Options{Config: cfg, Log: zerolog.Nop(), Adapters: map[alert.Kind]adapters.Adapter{alert.KindSiren: adapters.Func(nil)}})
	for _, s := range []string{
		`{"trigger":"amok-button","zone":"school","event_id":"e1","timestamp":"2026-11-22T10:00:00Z","hmac":"00"}`,
		`{"trigger":"reset","zone":"school","event_id":"e2","timestamp":"2026-11-22T10:00:00Z","reset_of":"e1","hmac":"zz"}`,
		`{"trigger":"amok-button","extra":1}`, `{}`, `null`, `[`, ``,
	} {
		f.Add("button", []byte(s))
		f.Add("nobody", []byte(s))
	}
	f.Fuzz(func(t *testing.T, source string, payload []byte) {
		ack, _ := g.decideTrigger(context.Background(), source, payload)
		if ack.Status != "rejected" {
			t.Fatalf("decision %+v for an unsigned payload", ack)
		}
	})
}
