package routing_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/routing"
)

// benchRouter routes over 3 sirens and n people by SMS and voice in zone
// school.
func benchRouter(b *testing.B, n int) *routing.Router {
	b.Helper()
	var y strings.Builder
	y.WriteString("zones: [{id: school}]\nsirens: [{id: s1, zone: school}, {id: s2, zone: school}, {id: s3, zone: school}]\n")
	b.Setenv("TOCSIN_BENCH_TW", "benchtoken0000000000000000")
	y.WriteString("public_url: http://127.0.0.1:1\ntwilio:\n  primary: main\n  accounts:\n    - {id: main, account_sid: AC00000000000000000000000000000001, auth_token_env: TOCSIN_BENCH_TW, sms: {from: '+4930100000'}, voice: {from: '+4930100001'}}\n")
	y.WriteString("contacts:\n  - id: staff\n    zone: school\n    people:\n")
	for i := range n {
		fmt.Fprintf(&y, "      - {id: p%05d, phone: '+4915100%06d'}\n", i, i)
	}
	cfg, err := config.Parse([]byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	return routing.New(cfg)
}

// BenchmarkRoute10k: planning an alert to a zone with 10,000 people by SMS
// and voice (20,003 targets with the sirens); the queue then stores them in
// batches (priority.BenchmarkEnqueueFanout).
func BenchmarkRoute10k(b *testing.B) {
	r := benchRouter(b, 10000)
	a := &alert.Alert{Status: alert.StatusActual, Severity: alert.SeverityExtreme, Zones: []string{"school"}, Channels: []alert.Kind{alert.KindSiren, alert.KindSMS, alert.KindVoice}}
	b.Run("tocsin", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ts := r.Route(a); len(ts) != 20003 {
				b.Fatalf("%d targets", len(ts))
			}
		}
	})
	b.Run("copy-prebuilt", func(b *testing.B) { // the floor: copying the finished plan
		plan := r.Route(a)
		b.ReportAllocs()
		for b.Loop() {
			_ = append([]alert.Target(nil), plan...)
		}
	})
}
