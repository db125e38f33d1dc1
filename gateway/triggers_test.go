package gateway_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tocsin-alert/tocsin/gateway"
	"github.com/tocsin-alert/tocsin/internal/testenv"
)

// panel is a building system on MQTT: it publishes triggers and collects
// the gateway's acks.
type panel struct {
	t    *testing.T
	c    mqtt.Client
	mu   sync.Mutex
	acks map[string]gateway.TriggerAck
}

func newPanel(t *testing.T, s *stack) *panel {
	p := &panel{t: t, acks: map[string]gateway.TriggerAck{}}
	o := mqtt.NewClientOptions().AddBroker(testenv.MQTTURL(s.broker)).SetClientID("panel-" + strings.ReplaceAll(t.Name(), "/", "-"))
	p.c = mqtt.NewClient(o)
	if tok := p.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("panel connect: %v", tok.Error())
	}
	t.Cleanup(func() { p.c.Disconnect(100) })
	tok := p.c.Subscribe("tocsin/v1/trigger/+/ack", 1, func(_ mqtt.Client, m mqtt.Message) {
		var a gateway.TriggerAck
		if json.Unmarshal(m.Payload(), &a) == nil {
			p.mu.Lock()
			p.acks[a.EventID] = a
			p.mu.Unlock()
		}
	})
	tok.WaitTimeout(5 * time.Second)
	return p
}

var seq int

// trigger is a signed trigger from source (key from triggerKeys unless key is set).
func trigger(source, name, zone string, at time.Time, key ...string) gateway.Trigger {
	seq++
	tr := gateway.Trigger{Trigger: name, Zone: zone, EventID: fmt.Sprintf("%s-%d-%d", source, time.Now().UnixNano(), seq), Timestamp: at.UTC().Format(time.RFC3339Nano)}
	k := triggerKeys[source]
	if len(key) > 0 {
		k = key[0]
	}
	tr.HMAC = gateway.TriggerMAC([]byte(k), tr)
	return tr
}

func (p *panel) send(source string, tr gateway.Trigger) {
	b, _ := json.Marshal(tr)
	p.c.Publish("tocsin/v1/trigger/"+source, 1, false, b).WaitTimeout(5 * time.Second)
}

// ack waits for the gateway's answer to event.
func (p *panel) ack(event string) gateway.TriggerAck {
	p.t.Helper()
	var a gateway.TriggerAck
	eventually(p.t, 5*time.Second, "ack of "+event, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		var ok bool
		a, ok = p.acks[event]
		return ok
	})
	return a
}

// A trigger signed with the source's key sounds the zone's sirens; every
// rejection class is answered on the ack topic, audited, and sounds nothing.
func TestTriggersAcceptedAndRejected(t *testing.T) {
	s := newStack(t, stackOptions{triggers: true})
	p := newPanel(t, s)

	good := trigger("school-button", "amok-button", "school", time.Now())
	p.send("school-button", good)
	a := p.ack(good.EventID)
	if a.Status != "accepted" || a.AlertID == "" {
		t.Fatalf("good trigger: %+v", a)
	}
	eventually(t, 5*time.Second, "sirens sounded", func() bool { return s.sirenCounts(string(a.AlertID))["delivered"] == float64(3) })

	replay := good
	stale := trigger("school-button", "amok-button", "school", time.Now().Add(-time.Minute))
	forged := trigger("school-button", "amok-button", "school", time.Now(), "not-the-button-key-000000")
	outside := trigger("school-button", "amok-button", "townhall", time.Now())
	unknownTpl := trigger("school-button", "fire-alarm", "school", time.Now())
	stranger := trigger("school-button", "amok-button", "school", time.Now())
	for _, c := range []struct {
		name, source string
		tr           gateway.Trigger
		reason       string
	}{
		{"replayed event id", "school-button", replay, "replay"},
		{"stale timestamp", "school-button", stale, "outside the"},
		{"forged hmac", "school-button", forged, "hmac does not match"},
		{"zone outside the source's", "school-button", outside, "outside the source's zones"},
		{"unknown trigger", "school-button", unknownTpl, "no template"},
		{"unknown source", "basement-hacker", stranger, "unknown source"},
	} {
		p.mu.Lock()
		delete(p.acks, c.tr.EventID)
		p.mu.Unlock()
		p.send(c.source, c.tr)
		if got := p.ack(c.tr.EventID); got.Status != "rejected" || !strings.Contains(got.Reason, c.reason) {
			t.Errorf("%s: %+v; want rejected for %q", c.name, got, c.reason)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if n := deliveries(s); n != 3 {
		t.Errorf("%d siren deliveries; want only the good trigger's 3", n)
	}
	audit := s.do("GET", "/v1/triggers?status=rejected", operatorKey, "", "")
	if strings.Count(audit.Raw, `"status":"rejected"`) != 6 {
		t.Errorf("audit of rejections = %s; want 6", audit.Raw)
	}
	// The same with Debian's mosquitto_pub, as a building system's script would.
	viaCLI := trigger("townhall-panel", "amok-button", "townhall", time.Now())
	b, _ := json.Marshal(viaCLI)
	out, err := exec.Command(testenv.MosquittoPub(t), "-h", "127.0.0.1", "-p", fmt.Sprint(s.broker.Port), "-q", "1",
		"-t", "tocsin/v1/trigger/townhall-panel", "-m", string(b)).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	if got := p.ack(viaCLI.EventID); got.Status != "accepted" {
		t.Fatalf("trigger via mosquitto_pub: %+v", got)
	}
}

// A source in maintenance cannot sound anything: its triggers are
// quarantined, shown to operators, and answered so; maintenance ends by
// itself; a dispatcher's own alert is never held by it.
func TestMaintenanceQuarantinesTriggers(t *testing.T) {
	s := newStack(t, stackOptions{triggers: true})
	p := newPanel(t, s)
	r := s.do("PUT", "/v1/sources/school-button/maintenance", operatorKey, "application/json", `{"reason":"IT works on the central system","for":"2s"}`)
	if r.Code != 200 {
		t.Fatalf("maintenance = %d %s", r.Code, r.Raw)
	}
	if r := s.do("PUT", "/v1/sources/school-button/maintenance", dispatchKey, "application/json", `{"reason":"x","for":"1h"}`); r.Code != 403 || r.Body["scope"] != "maintenance" {
		t.Errorf("maintenance by a dispatcher = %d %s; want 403 maintenance", r.Code, r.Raw)
	}
	tr := trigger("school-button", "amok-button", "school", time.Now())
	p.send("school-button", tr)
	if a := p.ack(tr.EventID); a.Status != "quarantined" || !strings.Contains(a.Reason, "IT works") {
		t.Fatalf("trigger in maintenance: %+v; want quarantined", a)
	}
	if q := s.do("GET", "/v1/triggers?status=quarantined", operatorKey, "", ""); !strings.Contains(q.Raw, tr.EventID) {
		t.Errorf("quarantined triggers = %s; want %s listed", q.Raw, tr.EventID)
	}
	// A human dispatcher is not held by the source's maintenance.
	d := s.post(amok())
	if d.Code != 202 {
		t.Fatalf("dispatcher's alert during maintenance = %d %s", d.Code, d.Raw)
	}
	eventually(t, 5*time.Second, "the dispatcher's alert sounded", func() bool { return s.sirenCounts(d.Body["id"].(string))["delivered"] == float64(3) })
	for _, rc := range s.fleet.Received() {
		if rc.Cmd.Event == "Amok" && rc.Cmd.AlertID != d.Body["id"] {
			t.Fatalf("the quarantined trigger reached %s", rc.Siren)
		}
	}
	time.Sleep(2100 * time.Millisecond) // maintenance ends by itself
	if src := s.do("GET", "/v1/sources", operatorKey, "", ""); strings.Contains(src.Raw, "IT works") {
		t.Errorf("sources after the end = %s; want no maintenance", src.Raw)
	}
	after := trigger("school-button", "amok-button", "school", time.Now())
	p.send("school-button", after)
	if a := p.ack(after.EventID); a.Status != "accepted" && a.Status != "duplicate" {
		t.Fatalf("trigger after maintenance: %+v", a)
	}
}

// 52 triggers of one event within a second, from two allowed sources of the
// zone, make one alert and one delivery per siren; both sources are recorded.
func TestFiftyTwoTriggersOneAlert(t *testing.T) {
	s := newStack(t, stackOptions{triggers: true})
	p := newPanel(t, s)
	var events []string
	for i := range 52 {
		src := []string{"school-button", "school-panel-2"}[i%2]
		tr := trigger(src, "amok-button", "school", time.Now())
		events = append(events, tr.EventID)
		p.send(src, tr)
	}
	ids, accepted := map[string]bool{}, 0
	for _, e := range events {
		a := p.ack(e)
		ids[string(a.AlertID)] = true
		if a.Status == "accepted" {
			accepted++
		} else if a.Status != "duplicate" {
			t.Fatalf("trigger %s: %+v", e, a)
		}
	}
	if len(ids) != 1 || accepted != 1 {
		t.Fatalf("%d alerts, %d accepted; want one alert, accepted once", len(ids), accepted)
	}
	var id string
	for id = range ids {
	}
	eventually(t, 5*time.Second, "sirens sounded", func() bool { return s.sirenCounts(id)["delivered"] == float64(3) })
	time.Sleep(300 * time.Millisecond)
	if n := deliveries(s); n != 3 {
		t.Fatalf("%d siren deliveries; want one per siren", n)
	}
	got := s.get(id)
	if src := fmt.Sprint(got.Body["trigger_sources"]); !strings.Contains(src, "school-button") || !strings.Contains(src, "school-panel-2") {
		t.Fatalf("trigger_sources = %s; want both sources", src)
	}
}

// The panel's reset of the same event within the reset window retracts the
// alert: the sirens that sounded get all_clear.
func TestPanelResetRetracts(t *testing.T) {
	s := newStack(t, stackOptions{triggers: true})
	p := newPanel(t, s)
	tr := trigger("school-button", "amok-button", "school", time.Now())
	p.send("school-button", tr)
	a := p.ack(tr.EventID)
	eventually(t, 5*time.Second, "sirens sounded", func() bool { return s.sirenCounts(string(a.AlertID))["delivered"] == float64(3) })
	reset := gateway.Trigger{Trigger: "reset", Zone: "school", EventID: tr.EventID + "-reset", Timestamp: time.Now().UTC().Format(time.RFC3339Nano), ResetOf: tr.EventID}
	reset.HMAC = gateway.TriggerMAC([]byte(triggerKeys["school-button"]), reset)
	p.send("school-button", reset)
	if r := p.ack(reset.EventID); r.Status != "reset" || r.AlertID != a.AlertID {
		t.Fatalf("reset: %+v", r)
	}
	eventually(t, 5*time.Second, "all_clear 3/3", func() bool { return s.sirenCounts(string(a.AlertID))["retracted"] == "3/3" })
}

func resetOf(source string, tr gateway.Trigger) gateway.Trigger {
	reset := gateway.Trigger{Trigger: "reset", Zone: tr.Zone, EventID: tr.EventID + "-reset", Timestamp: time.Now().UTC().Format(time.RFC3339Nano), ResetOf: tr.EventID}
	reset.HMAC = gateway.TriggerMAC([]byte(triggerKeys[source]), reset)
	return reset
}

// Two panels raise one alert. One panel's reset leaves it raised (the other
// still holds it); the second reset retracts it. Then the button is pressed
// again: a new alert that sounds, not a duplicate of the reset one.
func TestResetRetractsOnlyWhenNoPanelHoldsTheAlert(t *testing.T) {
	s := newStack(t, stackOptions{triggers: true})
	p := newPanel(t, s)
	t1 := trigger("school-button", "amok-button", "school", time.Now())
	t2 := trigger("school-panel-2", "amok-button", "school", time.Now())
	p.send("school-button", t1)
	a := p.ack(t1.EventID)
	p.send("school-panel-2", t2)
	if b := p.ack(t2.EventID); b.Status != "duplicate" || b.AlertID != a.AlertID {
		t.Fatalf("second panel: %+v; want a duplicate of %s", b, a.AlertID)
	}
	r1 := resetOf("school-button", t1)
	p.send("school-button", r1)
	if r := p.ack(r1.EventID); r.Status != "lowered" || r.AlertID != a.AlertID {
		t.Fatalf("first reset: %+v; want lowered (the other panel still holds it)", r)
	}
	if st := s.get(string(a.AlertID)); st.Body["state"] == "retracted" {
		t.Fatalf("one panel's reset retracted an alert the other still holds: %s", st.Raw)
	}
	// A replayed reset changes nothing.
	p.mu.Lock()
	delete(p.acks, r1.EventID)
	p.mu.Unlock()
	p.send("school-button", r1)
	if r := p.ack(r1.EventID); r.Status != "rejected" || !strings.Contains(r.Reason, "replay") {
		t.Fatalf("replayed reset: %+v; want rejected as a replay", r)
	}
	r2 := resetOf("school-panel-2", t2)
	p.send("school-panel-2", r2)
	if r := p.ack(r2.EventID); r.Status != "reset" {
		t.Fatalf("second reset: %+v; want reset", r)
	}
	eventually(t, 5*time.Second, "retracted", func() bool { return s.get(string(a.AlertID)).Body["state"] == "retracted" })
	again := trigger("school-button", "amok-button", "school", time.Now())
	p.send("school-button", again)
	n := p.ack(again.EventID)
	if n.Status != "accepted" || n.AlertID == a.AlertID || n.Dedup == nil || n.Dedup.Rule != "retracted" {
		t.Fatalf("pressed again after the reset: %+v; want a new alert (not merged into the retracted %s)", n, a.AlertID)
	}
	eventually(t, 5*time.Second, "the new alarm sounds", func() bool { return s.sirenCounts(string(n.AlertID))["delivered"] == float64(3) })
}

// deliveries counts the distinct deliveries the sirens received: a resend of
// the same delivery id (its ack was late) is not a second delivery.
func deliveries(s *stack) int {
	ids := map[string]bool{}
	for _, r := range s.fleet.Received() {
		ids[r.Siren+"|"+r.Cmd.DeliveryID] = true
	}
	return len(ids)
}

// A flood of forged triggers on one source's topic is cut by a rate limit of
// its own: what is dropped is audited as a rejection with its count, the
// audit still shows a real panel's decision made during the flood, and the
// flooded source's own genuine press still gets through.
func TestTriggerFloodIsAuditedAndRealDecisionsKept(t *testing.T) {
	s := newStack(t, stackOptions{triggers: true})
	p := newPanel(t, s)
	for range 400 {
		forged := trigger("school-button", "amok-button", "school", time.Now(), "not-the-button-key-000000")
		b, _ := json.Marshal(forged)
		p.c.Publish("tocsin/v1/trigger/school-button", 0, false, b)
	}
	real := trigger("townhall-panel", "amok-button", "townhall", time.Now())
	p.send("townhall-panel", real)
	if a := p.ack(real.EventID); a.Status != "accepted" {
		t.Fatalf("the real trigger during the flood: %+v", a)
	}
	own := trigger("school-button", "amok-button", "school", time.Now())
	p.send("school-button", own)
	if a := p.ack(own.EventID); a.Status != "accepted" {
		t.Fatalf("the flooded source's own press: %+v; want accepted (forgeries must not use up its rate)", a)
	}
	var got map[string]any
	eventually(t, 5*time.Second, "the dropped triggers audited with their count", func() bool {
		got = s.do("GET", "/v1/triggers?status=rejected", operatorKey, "", "").Body
		for _, e := range got["triggers"].([]any) {
			if m := e.(map[string]any); strings.HasPrefix(m["source"].(string), "school-button") && strings.Contains(m["reason"].(string), "dropped") {
				return true
			}
		}
		return false
	})
	acc := s.do("GET", "/v1/triggers?status=accepted", operatorKey, "", "")
	if !strings.Contains(acc.Raw, real.EventID) {
		t.Fatalf("accepted decisions after the flood: %s; want the real trigger %s", acc.Raw, real.EventID)
	}
}
