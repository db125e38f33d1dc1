package gateway_test

import (
	"context"
	"testing"

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
