package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/gateway"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// "Can we still alert?" Every siren gets a silent probe each second and a
// dead one is found: GET /v1/health/channels and /metrics say which, the
// on-duty operator is told once by SMS (not once per failing round), no
// siren sounds for a probe, and the Twilio account's API check passes until
// the provider fails it; the dispatch centre Acks its CAP Test message until
// it fails. The siren coming back passes again.
func TestProbes(t *testing.T) {
	dead := sirenIDs("school", 1)[0]
	tw := fakeTwilio(t, fake.TwilioOptions{NoCallbacks: true})
	port := testenv.FreePort(t)
	ils, err := fake.StartDispatch(fake.DispatchOptions{Keys: map[string][]byte{"ils": []byte(dispatchHMAC)}, AckURL: ackURL(port)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ils.Close)
	broker := testenv.Mosquitto(t)
	pa, err := fake.StartPA(fake.PAOptions{Broker: testenv.MQTTURL(broker), MQTTIDs: []string{"pa-mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pa.Close)
	s := newStack(t, stackOptions{broker: broker, offline: []string{dead}, phones: 1, twilio: tw, dispatch: ils, pa: pa, publicPort: port, extra: `
operators:
  - {id: ben, name: Ben Duty, roles: [viewer], zones: ["*"], phone: "+4915199999999", on_duty: true}
probes: {sirens: 1s, pa: 1s, twilio: 1s, dispatch: 1s, timeout: 2s, notify: [sms]}
`})
	probes := func() string { return s.do("GET", "/v1/health/channels", operatorKey, "", "").Raw }
	eventually(t, 8*time.Second, "the dead siren's probe failing and a live one passing", func() bool {
		p := probes()
		return strings.Contains(p, `"kind":"siren","target":"`+dead+`","ok":false`) &&
			strings.Contains(p, `"kind":"siren","target":"school-01","ok":true`) && strings.Contains(p, `"kind":"twilio","target":"main","ok":true`) &&
			strings.Contains(p, `"kind":"dispatch","target":"ils","ok":true`) && strings.Contains(p, `"kind":"pa","target":"pa-main","ok":true`) &&
			strings.Contains(p, `"kind":"pa","target":"pa-mqtt","ok":true`)
	})
	m := s.do("GET", "/metrics", "", "", "").Raw
	for _, want := range []string{`tocsin_probe_ok{kind="siren",target="` + dead + `"} 0`, `tocsin_probe_ok{kind="siren",target="townhall-00"} 1`, `tocsin_probe_ok{kind="twilio",target="main"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	told := func() int {
		n := 0
		for _, msg := range tw.Messages() {
			if msg.To == "+4915199999999" && strings.Contains(msg.Body, dead) {
				n++
			}
		}
		return n
	}
	eventually(t, 5*time.Second, "the on-duty operator told by SMS", func() bool { return told() == 1 })
	time.Sleep(2500 * time.Millisecond) // more failing rounds
	if n := told(); n != 1 {
		t.Errorf("the operator was told %d times; want once while it keeps failing", n)
	}
	for _, id := range append(sirenIDs("school", 3), sirenIDs("townhall", 3)...) {
		if a := s.fleet.Sounding(id); a != "" {
			t.Errorf("siren %s sounds for %s after probes; a probe must never sound", id, a)
		}
	}
	probed := 0
	for _, rc := range s.fleet.Received() {
		if rc.Cmd.Signal == "probe" {
			probed++
		} else {
			t.Errorf("siren %s got %s; only probes were sent", rc.Siren, rc.Cmd.Signal)
		}
	}
	if probed < 6 {
		t.Errorf("%d probe commands; want every siren probed", probed)
	}
	if n := len(pa.Received()); n != 0 {
		t.Errorf("the PA controllers played %d commands; a probe must play nothing", n)
	}
	// Flapping: back, then dead again — the operator, told once within the
	// hour, is not told again.
	s.fleet.SetOffline(dead, false)
	eventually(t, 5*time.Second, "the dead siren answering again", func() bool { return strings.Contains(probes(), `"target":"`+dead+`","ok":true`) })
	s.fleet.SetOffline(dead, true)
	eventually(t, 5*time.Second, "the siren failing again", func() bool { return strings.Contains(probes(), `"target":"`+dead+`","ok":false`) })
	time.Sleep(time.Second)
	if n := told(); n != 1 {
		t.Errorf("the operator was told %d times of a flapping siren within the hour; want once", n)
	}
	s.fleet.SetOffline(dead, false)
	tw.SetFailure(fake.TwilioFailure{Status: 503})
	ils.Fail("ils", "error")
	pa.Fail("pa-main", "error")
	pa.Fail("pa-mqtt", "error")
	eventually(t, 8*time.Second, "the siren passing again, the account and the centre failing", func() bool {
		p := probes()
		return strings.Contains(p, `"target":"`+dead+`","ok":true`) && strings.Contains(p, `"kind":"twilio","target":"main","ok":false`) &&
			strings.Contains(p, `"kind":"dispatch","target":"ils","ok":false`) && strings.Contains(p, `"kind":"pa","target":"pa-main","ok":false`) &&
			strings.Contains(p, `"kind":"pa","target":"pa-mqtt","ok":false`)
	})
}

// The weekly real test SMS, here every 2 s: it goes to the on-duty
// operator through the SMS route like any delivery and passes only when
// Twilio reports it delivered; with the provider failing, it fails.
func TestTestSMSProbe(t *testing.T) {
	tw := fakeTwilio(t, fake.TwilioOptions{})
	s := newStack(t, stackOptions{phones: 1, twilio: tw, extra: `
operators:
  - {id: ben, name: Ben Duty, roles: [viewer], zones: ["*"], phone: "+4915199999999", on_duty: true}
probes: {test_sms: 2s, test_sms_to: ben, test_sms_timeout: 5s}
`})
	probe := func() string { return s.do("GET", "/v1/health/channels", operatorKey, "", "").Raw }
	eventually(t, 10*time.Second, "the test SMS delivered", func() bool { return strings.Contains(probe(), `"kind":"sms","target":"ben","ok":true`) })
	got := false
	for _, m := range tw.Messages() {
		got = got || m.To == "+4915199999999" && strings.Contains(m.Body, "test SMS")
	}
	if !got {
		t.Errorf("no test SMS to Ben's phone among %d messages", len(tw.Messages()))
	}
	tw.SetFailure(fake.TwilioFailure{Status: 500})
	eventually(t, 15*time.Second, "the test SMS failing with the provider", func() bool { return strings.Contains(probe(), `"kind":"sms","target":"ben","ok":false`) })
}

// Two instances share the probing: each round of a siren's probe is taken
// by one of them (a lock in Redis per target and round), so a siren is not
// probed once per instance.
func TestProbesOneInstancePerRound(t *testing.T) {
	s := newStack(t, stackOptions{extra: `
operators:
  - {id: ben, name: Ben Duty, roles: [viewer], zones: ["*"], phone: "+4915199999999", on_duty: true}
probes: {sirens: 1s}
`})
	second := *s.cfg
	second.MQTT.ClientID = s.cfg.MQTT.ClientID + "-second"
	gw, err := gateway.Open(&second, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { gw.Run(ctx, time.Second); close(done) }()
	t.Cleanup(func() { cancel(); <-done; gw.Close() })
	start := time.Now()
	time.Sleep(4500 * time.Millisecond)
	rounds := int(time.Since(start)/time.Second) + 1
	per := map[string]int{}
	for _, rc := range s.fleet.Received() {
		if rc.Cmd.Signal == "probe" && !rc.Repeat {
			per[rc.Siren]++
		}
	}
	for _, id := range append(sirenIDs("school", 3), sirenIDs("townhall", 3)...) {
		if n := per[id]; n < 2 || n > rounds+1 {
			t.Errorf("siren %s probed %d times in %d rounds by two instances; want one probe per round", id, n, rounds)
		}
	}
}
