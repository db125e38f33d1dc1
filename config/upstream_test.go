package config_test

import (
	"strings"
	"testing"

	"github.com/tocsin-alert/tocsin/config"
)

// An upstream (a central Tocsin) signs instead of holding an API key: its
// CAP certificate, the HMAC key and where to send Acks are required, and
// every missing piece is named at once.
func TestUpstreamProblems(t *testing.T) {
	t.Setenv("UP_KEY", "short")
	err := parseProblems(t, `
zones: [{id: school}]
principals:
  - {id: central, kind: upstream, key_env: SOME_KEY, upstream: {hmac_key_env: UP_KEY, ack_url: "http://central.example/v1/callbacks/cap/site"}}
  - {id: other, kind: upstream}
  - {id: leitstelle, kind: dispatch, key_sha256: `+keyHash+`, upstream: {hmac_key_env: UP_KEY}}
`)
	for _, want := range []string{
		"principals[0].kind: an upstream has no API key",
		"principals[0].cap_certs: required for kind upstream",
		"principals[0].upstream.hmac_key_env: environment variable UP_KEY must hold the HMAC key shared with the central (16 characters or more)",
		"principals[0].upstream.ack_url: http://central.example/v1/callbacks/cap/site: must be https://",
		"principals[1].upstream: required for kind upstream",
		"principals[2].upstream: only for kind upstream",
	} {
		if !strings.Contains(err, want) {
			t.Errorf("problems lack %q:\n%s", want, err)
		}
	}
}

func parseProblems(t *testing.T, y string) string {
	t.Helper()
	_, err := config.Parse([]byte(y))
	if err == nil {
		t.Fatal("parsed; want problems")
	}
	return err.Error()
}
