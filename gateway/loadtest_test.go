package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/loadtest"
)

// The load generator's scenarios against a running gateway, through its
// public HTTP and MQTT interfaces: what they count matches what happened.
func TestLoadtestScenarios(t *testing.T) {
	s := newStack(t, stackOptions{})
	res, err := loadtest.Ingest(context.Background(), loadtest.IngestOptions{URL: s.url, Key: dispatchKey, Senders: 4, Count: 200,
		Repeat: 0.25, Zones: []string{"townhall"}, Channels: []string{"siren"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Accepted+res.Duplicates != 200 || res.Duplicates == 0 || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
		t.Fatalf("ingest = %s; want 200 answered, some duplicates, no errors", res.Summary())
	}
	t.Log(res.Summary())
	p, err := loadtest.Pickup(context.Background(), loadtest.PickupOptions{URL: s.url, Key: dispatchKey, Broker: testenv.MQTTURL(s.broker), Zone: "school", Count: 5, Idle: 50e6})
	if err != nil {
		t.Fatal(err)
	}
	if p.Accepted != 5 || p.Errors != 0 || p.Latency.P50 <= 0 {
		t.Fatalf("pickup = %s; want 5 picked up", p.Summary())
	}
	t.Log(p.Summary())
	if _, err := loadtest.Ingest(context.Background(), loadtest.IngestOptions{URL: "http://192.0.2.1:8080", Key: "k", Count: 1}); err == nil {
		t.Fatal("ingest aimed off loopback was not refused")
	}
}

// The scenarios that start their own gateway processes, at a small size:
// each runs end to end against real Redis and Mosquitto, and what it counts
// at the fakes keeps the promises (none lost, every reached target retracted
// after its original, sirens sounded and cleared).
func TestLoadtestStackScenarios(t *testing.T) {
	ctx := context.Background()
	o := loadtest.StackOptions{Binary: binary, Redis: testenv.Redis(t).Addr(), Broker: testenv.MQTTURL(testenv.Mosquitto(t)),
		Recipients: 3000, Workers: 4, BatchSize: 50, Lease: time.Second}
	f, err := loadtest.Fanout(ctx, loadtest.FanoutOptions{Stack: o, SendFor: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(f.Summary())
	if g := f.Figures; g["handed"] != 3000 || g["handed_per_s"] <= 0 || g["bare_twilio_go_per_s"] <= 0 || g["redis_bytes_per_delivery"] <= 0 {
		t.Fatalf("fanout = %s; want all 3000 handed over, rates and bytes measured", f.Summary())
	}
	r, err := loadtest.Retract(ctx, loadtest.RetractOptions{Stack: o, At: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r.Summary())
	if g := r.Figures; g["reached"] < 1500 || g["reached_not_retracted"] != 0 || g["retraction_before_original"] != 0 || g["retracted_never_reached"] != 0 || g["sirens_without_all_clear"] != 0 {
		t.Fatalf("retract = %s; want every reached recipient retracted after the original, every siren cleared", r.Summary())
	}
	c, err := loadtest.Recover(ctx, loadtest.RecoverOptions{Stack: o})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(c.Summary())
	if g := c.Figures; g["lost"] != 0 || g["reclaimed_done_s"] > 5 {
		t.Fatalf("recover = %s; want nothing lost, reclaimed within 5 s", c.Summary())
	}
	idle, loaded, err := loadtest.SirenUnderLoad(ctx, loadtest.SirenUnderLoadOptions{Stack: o, Count: 5, Idle: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(idle.Summary())
	t.Log(loaded.Summary())
	if idle.Accepted != 5 || loaded.Accepted != 5 {
		t.Fatalf("siren-under-load: %d idle and %d loaded triggers sounded a siren, want 5 each", idle.Accepted, loaded.Accepted)
	}
}
