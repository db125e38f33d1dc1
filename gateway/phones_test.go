package gateway_test

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

func fakeTwilio(t testing.TB, o fake.TwilioOptions) *fake.Twilio {
	t.Helper()
	if o.Accounts == nil {
		o.Accounts = map[string]string{mainSID: mainToken, backupSID: backupToken}
	}
	f, err := fake.StartTwilio(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

func (s *stack) counts(id, kind string) map[string]any {
	ch, _ := s.get(id).Body["channels"].(map[string]any)
	c, _ := ch[kind].(map[string]any)
	return c
}

// byPhone groups the fake's messages per recipient, in arrival order.
func byPhone(ms []fake.FakeMessage) map[string][]fake.FakeMessage {
	out := map[string][]fake.FakeMessage{}
	for _, m := range ms {
		out[m.To] = append(out[m.To], m)
	}
	return out
}

// One alert reaches sirens, SMS and voice; one retraction reaches all of them,
// each on the channel that reached it, after the original.
func TestSMSAndVoiceEndToEnd(t *testing.T) {
	tw := fakeTwilio(t, fake.TwilioOptions{Undelivered: []string{phone(4)}})
	s := newStack(t, stackOptions{phones: 5, twilio: tw})
	r := s.post(`{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","headline":"Amokalarm","zones":["school"]}`)
	if r.Code != 202 || r.Body["targets"] != float64(3+5+5) {
		t.Fatalf("POST = %d %s; want 3 sirens + 5 SMS + 5 calls", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	eventually(t, 10*time.Second, "SMS and calls delivered per Twilio's callbacks", func() bool {
		sms, voice := s.counts(id, "sms"), s.counts(id, "voice")
		return sms["delivered"] == float64(4) && sms["failed"] == float64(1) && voice["delivered"] == float64(4) && voice["failed"] == float64(1)
	})
	ms := tw.Messages()
	if len(ms) != 5 {
		t.Fatalf("messages = %+v; want 5", ms)
	}
	// Arrival order at the fake is not fixed: the worker sends concurrently.
	for _, m := range ms {
		want := "WARNUNG: Amokalarm"
		if m.To == phone(3) {
			want = "WARNING: Amokalarm"
		}
		if !strings.HasPrefix(m.Body, want) || m.ValidityPeriod < 3500 || m.From != "+4930100000" {
			t.Errorf("%s got %q from %s valid %ds; want %q from the main sender, valid ~1h", m.To, m.Body, m.From, m.ValidityPeriod, want)
		}
	}
	if calls := tw.Calls(); len(calls) != 5 || !strings.Contains(calls[0].Twiml, `loop="2"`) {
		t.Fatalf("calls = %+v; want 5, spoken twice", calls)
	}

	if rr := s.retract(id, "false_alarm"); rr.Code != 202 {
		t.Fatalf("retract = %d %s", rr.Code, rr.Raw)
	}
	// The number Twilio could not reach was attempted, so it is owed a
	// retraction too, which fails again: 4/5.
	want := map[string]string{"siren": "3/3", "sms": "4/5", "voice": "4/5"}
	eventually(t, 10*time.Second, "every channel retracted: sirens 3/3, SMS and voice 4/5", func() bool {
		for k, w := range want {
			c := s.counts(id, k)
			if c["retracted"] != w || c["in_flight"] != float64(0) {
				return false
			}
		}
		return s.do("GET", "/v1/alerts/"+id+"/deliveries", dispatchKey, "", "").Raw != "" && strings.Count(s.do("GET", "/v1/alerts/"+id+"/deliveries", dispatchKey, "", "").Raw, `"retraction":"failed"`) == 2
	})
	// The failed retraction is counted as given up, and the sweep is over.
	for _, k := range []string{"sms", "voice"} {
		if c := s.counts(id, k); c["retractions_failed"] != float64(1) {
			t.Errorf("%s counts %v; want retractions_failed 1", k, c)
		}
	}
	if r := s.get(id); r.Body["retraction"].(map[string]any)["sweeping"] != false {
		t.Errorf("retraction %v; want sweeping false once every retraction is queued", r.Body["retraction"])
	}
	for to, got := range byPhone(tw.Messages()) {
		if len(got) != 2 || !strings.HasPrefix(got[0].Body, "WARN") || !strings.Contains(got[1].Body, "ALARM") && !strings.Contains(got[1].Body, "alarm") {
			t.Errorf("%s received %d messages %v; want the warning, then the false-alarm notice", to, len(got), got)
		}
	}
	if calls := tw.Calls(); len(calls) != 10 || !strings.Contains(calls[9].Twiml, "Fehlalarm") && !strings.Contains(calls[9].Twiml, "false alarm") {
		t.Fatalf("calls after retraction = %d; want 5 originals and 5 retraction calls", len(calls))
	}
}

// Provider pacing: 0 sends above the sender's rate; the backlog waits on our side.
func TestSMSPacingNeverExceeded(t *testing.T) {
	tw := fakeTwilio(t, fake.TwilioOptions{Rates: map[string]float64{"+4930100000": 20}, NoCallbacks: true})
	s := newStack(t, stackOptions{phones: 40, twilio: tw, rate: 20})
	start := time.Now()
	r := s.post(`{"status":"actual","event":"Gas","severity":"Severe","urgency":"Immediate","zones":["school"],"channels":["sms"]}`)
	if r.Code != 202 {
		t.Fatalf("POST = %d %s", r.Code, r.Raw)
	}
	eventually(t, 15*time.Second, "40 SMS sent", func() bool { return len(tw.Messages()) == 40 })
	took := time.Since(start)
	if v := tw.Violations(); v["+4930100000"] != 0 {
		t.Fatalf("%d sends above 20/s", v["+4930100000"])
	}
	if took < 1800*time.Millisecond {
		t.Fatalf("40 SMS at 20/s took %v, want ≥ ~2s", took)
	}
	t.Logf("40 SMS at 20/s took %v, 0 above the rate", took)
}

// A retraction during an SMS fan-out: no original is created at the provider
// after the retraction is accepted, and every recipient that got the original
// gets the all-clear after it. TOCSIN_FANOUT sets the size (default 10,000).
func TestRetractionDuringSMSFanout(t *testing.T) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("TOCSIN_FANOUT")); err == nil && v > 0 {
		n = v
	}
	rate := float64(n) / 4 // the fan-out takes ~4s; the retraction lands after ~1s
	tw := fakeTwilio(t, fake.TwilioOptions{NoCallbacks: true, Rates: map[string]float64{"+4930100000": rate}})
	s := newStack(t, stackOptions{phones: n, twilio: tw, rate: rate, workers: 16})
	r := s.post(`{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","zones":["school"],"channels":["sms"]}`)
	if r.Code != 202 {
		t.Fatalf("POST = %d %s", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	eventually(t, 20*time.Second, "the fan-out under way", func() bool { return len(tw.Messages()) >= n/5 })
	rr := s.retract(id, "false_alarm")
	accepted := time.Now()
	if rr.Code != 202 {
		t.Fatalf("retract = %d %s", rr.Code, rr.Raw)
	}
	var c map[string]any
	eventually(t, 60*time.Second, "retractions handed over", func() bool {
		c = s.counts(id, "sms")
		return c["in_flight"] == float64(0) && c["retracted"] == fmt.Sprintf("%v/%v", c["retractions_owed"], c["retractions_owed"])
	})
	late, originals := 0, 0
	for to, ms := range byPhone(tw.Messages()) {
		orig := -1
		for i, m := range ms {
			if strings.HasPrefix(m.Body, "WARNUNG") || strings.HasPrefix(m.Body, "WARNING") {
				orig = i
				originals++
				if m.At.After(accepted.Add(250 * time.Millisecond)) {
					late++
				}
			}
		}
		if orig >= 0 && (orig != 0 || len(ms) != 2 || !strings.Contains(ms[1].Body, "ENTWARNUNG") && !strings.Contains(ms[1].Body, "ALL CLEAR")) {
			t.Errorf("%s: %d messages, original at %d; want the original, then the all-clear", to, len(ms), orig)
		}
	}
	if late > 0 {
		t.Fatalf("%d originals created at the provider after the retraction was accepted", late)
	}
	if originals == 0 || originals == n {
		t.Fatalf("%d of %d originals sent; the retraction should have landed mid-fan-out", originals, n)
	}
	if owed := int(c["retractions_owed"].(float64)); owed < originals || owed > originals+16*50 {
		t.Fatalf("retractions owed %d for %d originals (at most the in-flight batches more)", owed, originals)
	}
	t.Logf("%d of %d originals before the fence; %v cancelled; retracted %v", originals, n, c["cancelled"], c["retracted"])
}

// Twilio failing 100%: the primary account's breaker opens and the fallback
// account carries the SMS; the sirens are not delayed.
func TestTwilioDownFallbackAndSirensUnaffected(t *testing.T) {
	down := fakeTwilio(t, fake.TwilioOptions{NoCallbacks: true})
	down.SetFailure(fake.TwilioFailure{Status: 500})
	backup := fakeTwilio(t, fake.TwilioOptions{NoCallbacks: true})
	s := newStack(t, stackOptions{phones: 20, twilio: down, fallback: backup})
	start := time.Now()
	id := s.post(`{"status":"actual","event":"Fire","severity":"Extreme","urgency":"Immediate","zones":["school"],"channels":["siren","sms"]}`).Body["id"].(string)
	eventually(t, 3*time.Second, "sirens delivered", func() bool { return s.counts(id, "siren")["delivered"] == float64(3) })
	sirensTook := time.Since(start)
	eventually(t, 15*time.Second, "all 20 SMS through the fallback account", func() bool { return len(backup.Messages()) == 20 })
	if sirensTook > time.Second {
		t.Fatalf("sirens took %v while Twilio was down; want < 1s", sirensTook)
	}
	for _, m := range backup.Messages() {
		if m.From != "+4930200000" || m.Account != backupSID {
			t.Fatalf("fallback message %+v not from the backup sender", m)
		}
	}
	t.Logf("sirens %v; primary saw %d requests before its breaker parked it", sirensTook, down.Requests())
}

// A 429 with Retry-After: no request reaches Twilio before it has passed.
func TestTwilio429RetryAfterHonoured(t *testing.T) {
	tw := fakeTwilio(t, fake.TwilioOptions{NoCallbacks: true})
	tw.SetFailure(fake.TwilioFailure{Status: 429, RetryAfter: 2})
	s := newStack(t, stackOptions{phones: 1, twilio: tw})
	s.post(`{"status":"actual","event":"Fire","severity":"Extreme","urgency":"Immediate","zones":["school"],"channels":["sms"]}`)
	eventually(t, 5*time.Second, "the first request answered 429", func() bool { return tw.Requests() >= 1 })
	first := time.Now()
	tw.SetFailure(fake.TwilioFailure{})
	eventually(t, 10*time.Second, "the SMS sent after Retry-After", func() bool { return len(tw.Messages()) == 1 })
	if got := tw.Messages()[0].At.Sub(first); got < 1800*time.Millisecond {
		t.Fatalf("retried %v after the 429; Retry-After was 2s", got)
	}
	if tw.Requests() != 2 {
		t.Fatalf("%d requests; want the 429 and one retry after Retry-After", tw.Requests())
	}
}

func TestTwilioCallbackSignature(t *testing.T) {
	tw := fakeTwilio(t, fake.TwilioOptions{})
	s := newStack(t, stackOptions{phones: 1, twilio: tw})
	form := url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"delivered"}, "AccountSid": {mainSID}}
	path := "/v1/callbacks/twilio/a1.sms.staff.p00000.a"
	for _, tt := range []struct {
		name, sig string
		code      int
	}{
		{"forged", fake.TwilioSignature("not-the-token", s.cfg.PublicURL+path, form), 403},
		{"missing", "", 403},
		{"signed with an empty key", fake.TwilioSignature("", s.cfg.PublicURL+path, form), 403},
		{"valid, unknown delivery", fake.TwilioSignature(mainToken, s.cfg.PublicURL+path, form), 204},
	} {
		r := s.do("POST", path, "", "application/x-www-form-urlencoded", form.Encode(), "X-Twilio-Signature", tt.sig)
		if r.Code != tt.code {
			t.Errorf("%s: callback = %d %s, want %d", tt.name, r.Code, r.Raw, tt.code)
		}
	}
}

// A Twilio account whose auth token is missing would send nothing and could
// not check a single callback (one signed with the empty key would pass):
// the configuration is refused (by serve and by config check alike),
// naming the field and the variable.
func TestTwilioTokenRequired(t *testing.T) {
	tw := fakeTwilio(t, fake.TwilioOptions{NoCallbacks: true})
	s := newStack(t, stackOptions{phones: 1, twilio: tw, noGateway: true})
	t.Setenv("TOCSIN_TEST_TWILIO_MAIN", "")
	_, err := config.Parse([]byte(s.cfgYML))
	if err == nil || !strings.Contains(err.Error(), "twilio.accounts[0].auth_token_env: environment variable TOCSIN_TEST_TWILIO_MAIN is empty") {
		t.Fatalf("Parse without the auth token: %v; want the field and the environment variable named", err)
	}
}

// Attempted means attempted: SMS that expire while they wait for their
// pace slot were never handed to the provider, so they read expired (not
// failed) and a retraction tells only the people who got the alert. An
// alert whose every target expired unsent reads expired.
func TestExpiredUnsentAreNeverTold(t *testing.T) {
	tw := fakeTwilio(t, fake.TwilioOptions{NoCallbacks: true})
	s := newStack(t, stackOptions{phones: 12, twilio: tw, rate: 4})
	exp := time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	r := s.post(`{"status":"actual","event":"Gas","severity":"Severe","urgency":"Immediate","zones":["school"],"channels":["sms"],"expires":"` + exp + `"}`)
	if r.Code != 202 {
		t.Fatalf("post = %d %s", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	eventually(t, 5*time.Second, "every SMS sent or expired", func() bool {
		c := s.counts(id, "sms")
		return c["sent"].(float64)+c["expired"].(float64) == 12
	})
	c := s.counts(id, "sms")
	sent := len(tw.Messages())
	if c["failed"] != float64(0) || c["expired"] == float64(0) || int(c["sent"].(float64)) != sent {
		t.Fatalf("counts %v with %d messages at the provider; want the unsent expired, none failed", c, sent)
	}
	if got := s.get(id).Body["state"]; got != "expired" && got != "completed" {
		t.Fatalf("state %v after expiry; want expired or completed", got)
	}
	if r := s.retract(id, "false_alarm"); r.Code != 202 {
		t.Fatalf("retract = %d %s", r.Code, r.Raw)
	}
	eventually(t, 5*time.Second, "retractions to exactly those sent", func() bool {
		return s.counts(id, "sms")["retracted"] == fmt.Sprintf("%d/%d", sent, sent)
	})

	// Nothing sent at all: the alert expires whole.
	s.cancelWorkers()
	exp = time.Now().Add(300 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	r = s.post(`{"status":"actual","event":"Gas 2","severity":"Severe","urgency":"Immediate","zones":["school"],"channels":["sms"],"expires":"` + exp + `"}`)
	id = r.Body["id"].(string)
	time.Sleep(400 * time.Millisecond)
	if got := s.get(id).Body["state"]; got != "expired" {
		t.Fatalf("state %v for an alert past its expiry with nothing sent; want expired", got)
	}
}

// Retractions take the next pace slot: at 10 segments/s with a backlog of
// originals waiting for their slots, the first retraction SMS leaves ≤ 1 s
// after the retraction; at a long code's 1 segment/s, ≤ 2 s (the German
// notice is two UCS-2 segments, and the provider counts segments). No
// second above the rate, in segments, either way.
func TestRetractionTakesTheNextPaceSlot(t *testing.T) {
	for _, tt := range []struct {
		rate   float64
		within time.Duration
	}{{10, time.Second}, {1, 2 * time.Second}} {
		t.Run(fmt.Sprintf("%g/s", tt.rate), func(t *testing.T) {
			took, sent := firstRetractionSMS(t, tt.rate)
			if took > tt.within {
				t.Fatalf("first retraction SMS %v after the retraction at %g segments/s; want ≤ %v", took, tt.rate, tt.within)
			}
			t.Logf("%g segments/s: %d originals out before the retraction; first retraction SMS %v after it", tt.rate, sent, took)
		})
	}
}

// BenchmarkFirstRetractionSMS: from the retract call to the first retraction
// SMS at the provider, during a paced fan-out whose backlog waits for its
// slots, at 10 and 1 segments/s; beside it the sender's interval (one
// segment's slot, the least any send waits behind the one before).
func BenchmarkFirstRetractionSMS(b *testing.B) {
	for _, rate := range []float64{10, 1} {
		b.Run(fmt.Sprintf("%gps", rate), func(b *testing.B) {
			var total time.Duration
			for range b.N {
				took, _ := firstRetractionSMS(b, rate)
				total += took
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "first-retraction-ms")
			b.ReportMetric(1000/rate, "interval-ms")
		})
	}
}

// firstRetractionSMS fans an alert out by SMS at rate segments/s, retracts
// it while most originals still wait for their slots, and returns how long
// after the retract call the first retraction SMS reached the provider, and
// how many originals had gone out. It fails if any second carried more
// segments than the rate, or if not every reached person was retracted.
func firstRetractionSMS(t testing.TB, rate float64) (time.Duration, int) {
	people, after := 60, 1500*time.Millisecond
	if rate < 5 {
		people, after = 8, 2200*time.Millisecond
	}
	first := make(chan time.Time, 1)
	tw := fakeTwilio(t, fake.TwilioOptions{NoCallbacks: true, Rates: map[string]float64{"+4930100000": rate},
		OnMessage: func(m fake.FakeMessage) {
			if strings.Contains(m.Body, "ENTWARNUNG") || strings.Contains(m.Body, "ALL CLEAR") {
				select {
				case first <- m.At:
				default:
				}
			}
		}})
	s := newStack(t, stackOptions{phones: people, twilio: tw, rate: rate})
	r := s.post(`{"status":"actual","event":"Gas","severity":"Severe","urgency":"Immediate","headline":"Gasaustritt","zones":["school"],"channels":["sms"]}`)
	id := r.Body["id"].(string)
	time.Sleep(after)
	sent := len(tw.Messages())
	if sent == 0 || sent >= people {
		t.Fatalf("%d of %d originals sent before the retraction; want some", sent, people)
	}
	retracted := time.Now()
	if r := s.retract(id, "false_alarm"); r.Code != 202 {
		t.Fatalf("retract = %d %s", r.Code, r.Raw)
	}
	var at time.Time
	select {
	case at = <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("no retraction SMS within 10s")
	}
	eventually(t, 20*time.Second, "every reached person retracted", func() bool {
		c := s.counts(id, "sms")
		return c["retracted"] == fmt.Sprintf("%v/%v", c["retractions_owed"], c["retractions_owed"]) && c["retractions_owed"] != float64(0)
	})
	if v := tw.Violations()["+4930100000"]; v != 0 {
		t.Fatalf("%d sends above %g segments/s", v, rate)
	}
	return at.Sub(retracted), sent
}

// BenchmarkRetractDuringFanout: how long the retract call takes, and how
// many originals still reach the provider more than 100 ms after the
// request arrived, during a 10,000-person SMS fan-out on these 2 cores —
// beside the same call on an idle gateway (the ceiling) in the same run.
func BenchmarkRetractDuringFanout(b *testing.B) {
	const n = 10000
	b.Run("idle", func(b *testing.B) {
		s := newStack(b, stackOptions{})
		var total time.Duration
		for i := range b.N {
			r := s.post(fmt.Sprintf(`{"status":"actual","event":"Amok %d","severity":"Extreme","urgency":"Immediate","zones":["school"],"channels":["siren"]}`, i))
			start := time.Now()
			if rr := s.retract(r.Body["id"].(string), "false_alarm"); rr.Code != 202 {
				b.Fatalf("retract = %d %s", rr.Code, rr.Raw)
			}
			total += time.Since(start)
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "retract-ms")
	})
	b.Run("during-fanout", func(b *testing.B) {
		var total time.Duration
		late := 0
		for range b.N {
			tw := fakeTwilio(b, fake.TwilioOptions{NoCallbacks: true})
			s := newStack(b, stackOptions{phones: n, twilio: tw, rate: 10000, workers: 16})
			r := s.post(`{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","zones":["school"],"channels":["sms"]}`)
			eventually(b, 30*time.Second, "the fan-out under way", func() bool { return len(tw.Messages()) >= n/5 })
			start := time.Now()
			if rr := s.retract(r.Body["id"].(string), "false_alarm"); rr.Code != 202 {
				b.Fatalf("retract = %d %s", rr.Code, rr.Raw)
			}
			total += time.Since(start)
			time.Sleep(time.Second)
			for _, m := range tw.Messages() {
				if !strings.Contains(m.Body, "ENTWARNUNG") && !strings.Contains(m.Body, "ALL CLEAR") && m.At.After(start.Add(100*time.Millisecond)) {
					late++
				}
			}
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "retract-ms")
		b.ReportMetric(float64(late)/float64(b.N), "originals-after-100ms")
	})
}
