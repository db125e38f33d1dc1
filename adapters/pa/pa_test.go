package pa_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/adapterstest"
	"github.com/tocsin-alert/tocsin/adapters/mqttcmd"
	"github.com/tocsin-alert/tocsin/adapters/pa"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

const token = "pa-controller-token-0001"

func received(ctl *fake.PA, id string, msg alert.Message) int {
	n := 0
	for _, r := range ctl.Received() {
		retraction := r.Cmd.MessageID != "alert"
		if r.Cmd.DeliveryID == id && retraction == (msg == alert.MessageRetraction) {
			n++
		}
	}
	return n
}

// A PA controller over HTTP, failing and hanging on demand.
func TestConformanceHTTP(t *testing.T) {
	ctl, err := fake.StartPA(fake.PAOptions{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	invalid := alert.Target{Kind: alert.KindPA, ID: "nowhere"}
	adapterstest.Run(t, adapterstest.Harness{
		New: func(t *testing.T, log zerolog.Logger) adapters.Adapter {
			return pa.New(pa.Config{
				Controllers: map[string]pa.Controller{"ctl": {ID: "ctl", URL: ctl.URL("ctl"), Token: token}},
				Zones:       map[string]pa.Zone{"hall": {ID: "hall", Controller: "ctl", Language: "de", Repeat: 2}},
				Timeout:     2 * time.Second,
			})
		},
		Target:   alert.Target{Kind: alert.KindPA, ID: "hall"},
		Invalid:  &invalid,
		Break:    func(mode string) { ctl.Fail("ctl", mode) },
		Received: func(id string, msg alert.Message) int { return received(ctl, id, msg) },
		Secrets:  []string{token},
	})
	got := ctl.Received()
	if len(got) < 2 || got[0].Cmd.Zone != "hall" || got[0].Cmd.Repeat != 2 || got[0].Cmd.Text == "" ||
		got[1].Cmd.MessageID != "false_alarm" || got[1].Cmd.Priority != int(alert.PriorityRetraction) {
		t.Fatalf("played %+v; want the alert in hall twice, then the all-clear at retraction priority", got)
	}
}

// A PA controller over MQTT, acking like a siren; a silent one never acks.
func TestConformanceMQTT(t *testing.T) {
	broker := testenv.Mosquitto(t)
	ctl, err := fake.StartPA(fake.PAOptions{Broker: testenv.MQTTURL(broker), MQTTIDs: []string{"ctl", "dead"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	ctl.Fail("dead", "hang")
	adapterstest.Run(t, adapterstest.Harness{
		New: func(t *testing.T, log zerolog.Logger) adapters.Adapter {
			c, err := mqttcmd.New(mqttcmd.Config{Broker: testenv.MQTTURL(broker), ClientID: "pa-conformance", Kinds: []string{"pa"}, AckTimeout: 300 * time.Millisecond}, log)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			return pa.New(pa.Config{
				Controllers: map[string]pa.Controller{"ctl": {ID: "ctl"}, "dead": {ID: "dead"}},
				Zones:       map[string]pa.Zone{"hall": {ID: "hall", Controller: "ctl", Language: "en", Repeat: 1}, "gym": {ID: "gym", Controller: "dead", Language: "de", Repeat: 1}},
				MQTT:        c,
			})
		},
		Target:   alert.Target{Kind: alert.KindPA, ID: "hall"},
		Silent:   &alert.Target{Kind: alert.KindPA, ID: "gym"},
		Received: func(id string, msg alert.Message) int { return received(ctl, id, msg) },
	})
}

// While a zone's controller's breaker is open, its fallback controller plays;
// a zone without a fallback stays parked.
func TestFallbackController(t *testing.T) {
	ctl, err := fake.StartPA(fake.PAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	n := pa.New(pa.Config{
		Controllers: map[string]pa.Controller{"main": {ID: "main", URL: ctl.URL("main")}, "spare": {ID: "spare", URL: ctl.URL("spare")}},
		Zones: map[string]pa.Zone{
			"hall": {ID: "hall", Controller: "main", Fallback: "spare", Language: "de", Repeat: 1},
			"gym":  {ID: "gym", Controller: "main", Language: "de", Repeat: 1},
		},
	})
	route := func(a adapters.Adapter) adapters.Adapter {
		return adapters.Breaker(adapters.BreakerOptions{Failures: 2, Open: time.Minute,
			Key: func(d alert.Delivery) string { return adapters.RouteOf(a, d).Breaker }})(a)
	}
	a := adapters.Failover(route(n), route(n.Fallback()))
	ctl.Fail("main", "error")
	mk := func(zone string) alert.Delivery {
		al := &alert.Alert{ID: "a1", Status: alert.StatusActual, Event: "Fire", Priority: 8}
		tg := alert.Target{Kind: alert.KindPA, ID: zone}
		return alert.Delivery{ID: alert.DeliveryID(al.ID, tg, alert.MessageAlert), Alert: al, Target: tg, Message: alert.MessageAlert, Expires: time.Now().Add(time.Minute)}
	}
	for range 2 { // trips main's breaker
		if err := a.Deliver(context.Background(), mk("hall")); err == nil {
			t.Fatal("Deliver through a failing controller = nil")
		}
	}
	if err := a.Deliver(context.Background(), mk("hall")); err != nil {
		t.Fatalf("Deliver with main's breaker open = %v, want the spare to play", err)
	}
	if got := ctl.Received(); len(got) != 1 || got[0].Controller != "spare" {
		t.Fatalf("played %+v; want one announcement from the spare", got)
	}
	if err := a.Deliver(context.Background(), mk("gym")); !errors.Is(err, adapters.ErrParked) {
		t.Fatalf("Deliver to a zone without fallback = %v, want parked", err)
	}
}
