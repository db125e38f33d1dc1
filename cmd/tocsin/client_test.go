package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// send never guesses the status: without --status (or with another word) it
// fails naming the flag and the choices, and asks the gateway nothing.
func TestSendRequiresStatus(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	base := []string{"--url", srv.URL, "--key", "k", "--event", "Fire", "--zones", "z"}
	for _, extra := range [][]string{nil, {"--status", "live"}, {"--status", ""}} {
		err := send(append(append([]string{}, base...), extra...))
		if err == nil {
			t.Fatalf("send %v = nil, want an error", extra)
		}
		for _, w := range []string{"--status", "actual", "exercise", "test"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("send %v = %q, lacks %q", extra, err, w)
			}
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the gateway was asked %d times", n)
	}
}
