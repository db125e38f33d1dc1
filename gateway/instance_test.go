package gateway_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/gateway"
)

// A second instance started by mistake with the live one's MQTT client id
// is refused before it reaches the broker (the live one keeps its session
// and goes on alerting); once the live one has stopped, the id is free at
// once.
func TestSecondInstanceSameClientIDRefused(t *testing.T) {
	s := newStack(t, stackOptions{})
	start := time.Now()
	g2, err := gateway.Open(s.cfg, testLogger(t), nil)
	if err == nil {
		g2.Close()
		t.Fatal("a second instance with the same mqtt.client_id started")
	}
	if !errors.Is(err, gateway.ErrClientIDTaken) {
		t.Fatalf("second instance: %v, want ErrClientIDTaken", err)
	}
	t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
	r := s.post(amok())
	if r.Code != 202 {
		t.Fatalf("POST = %d %s", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	eventually(t, 5*time.Second, "the live instance still sounds the sirens", func() bool { return s.sirenCounts(id)["delivered"] == float64(3) })

	s.cancel() // the live instance stops and releases the id
	start = time.Now()
	g3, err := gateway.Open(s.cfg, testLogger(t), nil)
	if err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	g3.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the freed id took %v to claim", d)
	}
}
