package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/config"
)

// hotConfig is a gateway with 3 sirens and 20 principals (authentication
// compares against all of them).
func hotConfig(b *testing.B) *Gateway {
	b.Helper()
	var y strings.Builder
	y.WriteString("zones: [{id: school}]\nsirens: [{id: s1, zone: school}, {id: s2, zone: school}, {id: s3, zone: school}]\nprincipals:\n")
	for i := range 20 {
		fmt.Fprintf(&y, "  - {id: p%d, kind: dispatch, key_sha256: %s, scopes: {zones: [\"*\"]}}\n", i, hex.EncodeToString(config.HashKey(fmt.Sprintf("bench-key-%02d-0000000000", i))))
	}
	cfg, err := config.Parse([]byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	nop := adapters.Func(nil)
	return New(Options{Config: cfg, Log: zerolog.Nop(), Adapters: map[alert.Kind]adapters.Adapter{alert.KindSiren: nop, alert.KindSMS: nop, alert.KindVoice: nop}})
}

// BenchmarkDecodeValidate: strict JSON decode, validation and scope checks of
// one alert body.
func BenchmarkDecodeValidate(b *testing.B) {
	g := hotConfig(b)
	p := &g.cfg.Principals[0]
	body := []byte(`{"status":"actual","event":"Fire","severity":"Severe","urgency":"Immediate","headline":"Brand im Rathaus","description":"Feuer im zweiten Obergeschoss","zones":["school"]}`)
	now := time.Now()
	b.Run("tocsin", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req alertRequest
			if err := decodeJSON(body, &req); err != nil {
				b.Fatal(err)
			}
			if _, err := g.validate(&req, p, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json-unmarshal-map", func(b *testing.B) { // the ceiling: what the bare handler does
		b.ReportAllocs()
		for b.Loop() {
			var v map[string]any
			if err := json.Unmarshal(body, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAuthenticate: the bearer key's SHA-256 compared in constant time
// with 20 principals' (the last one matches).
func BenchmarkAuthenticate(b *testing.B) {
	g := hotConfig(b)
	r := httptest.NewRequest("POST", "/v1/alerts", nil)
	r.Header.Set("Authorization", "Bearer bench-key-19-0000000000")
	b.Run("tocsin-20-principals", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := g.authenticate(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-sha256", func(b *testing.B) { // the floor of any hashed-key check
		key := []byte("bench-key-19-0000000000")
		for b.Loop() {
			sha256.Sum256(key)
		}
	})
}
