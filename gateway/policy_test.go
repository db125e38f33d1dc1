package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/cap"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// The channel policy decides which alerts may sound sirens: the German
// weather service's Moderate thunderstorm warning (a real document) reaches
// the school's staff by SMS but never its sirens, and the answer says so; a
// Severe warning sounds them. A zone may let sirens take Moderate alerts, an
// event may be kept off sirens altogether, and each event sounds its own
// controller profile.
func TestChannelPolicy(t *testing.T) {
	tw := fakeTwilio(t, fake.TwilioOptions{NoCallbacks: true})
	s := newStack(t, stackOptions{phones: 2, twilio: tw,
		school: `{id: school, geocodes: ["WARNCELLID=816064037"], polygon: "` + world + `"}`,
		extra: `
channel_policy:
  channels:
    - {channel: siren, events: [Probealarm], min_severity: never}
    - {channel: siren, zones: [townhall], min_severity: Moderate}
  signals:
    - {events: [Amok], signal: amok}
    - {events: [Fire, Brand], signal: fire}
`})
	moderate := s.postCAP(string(fresh(mustRead(t, "../cap/testdata/dwd-starkes-gewitter-update-de.xml"))))
	if moderate.Code != 202 {
		t.Fatalf("DWD Moderate thunderstorm = %d %s", moderate.Code, moderate.Raw)
	}
	if w, _ := moderate.Body["withheld"].([]any); len(w) != 1 || w[0].(map[string]any)["kind"] != "siren" || w[0].(map[string]any)["zone"] != "school" ||
		!strings.HasPrefix(w[0].(map[string]any)["reason"].(string), "severity Moderate is below Severe") {
		t.Errorf("answer %s; want the school's sirens withheld, naming the severity and the policy's Severe", moderate.Raw)
	}
	modID := moderate.Body["id"].(string)
	eventually(t, 5*time.Second, "2 SMS to the staff", func() bool { return len(tw.Messages()) == 2 })

	// Only sirens in the school: nothing may be reached, and the 400 says why.
	r := s.post(`{"status":"actual","event":"Gewitter","severity":"Moderate","urgency":"Expected","zones":["school"],"channels":["siren"]}`)
	if r.Code != 400 || r.Body["field"] != "severity" || !strings.Contains(r.Raw, "below Severe") {
		t.Errorf("Moderate to the school's sirens = %d %s; want 400 naming severity and the policy", r.Code, r.Raw)
	}
	// The townhall's sirens take Moderate alerts by their own rule.
	town := s.post(`{"status":"actual","event":"Gewitter","severity":"Moderate","urgency":"Expected","zones":["townhall"],"channels":["siren"]}`)
	if town.Code != 202 || strings.Contains(town.Raw, "withheld") {
		t.Fatalf("Moderate to the townhall = %d %s; want 202, nothing withheld", town.Code, town.Raw)
	}
	// An event kept off sirens, however severe.
	if r := s.post(`{"status":"actual","event":"probealarm","severity":"Extreme","urgency":"Immediate","zones":["school"],"channels":["siren"]}`); r.Code != 400 || !strings.Contains(r.Raw, "never uses siren") {
		t.Errorf("Probealarm = %d %s; want 400: the policy never sounds sirens for it", r.Code, r.Raw)
	}
	severe := s.postCAP(string(fresh(mustRead(t, "../cap/testdata/oasis-example-a2-thunderstorm-warning.xml"))))
	amok := s.post(`{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","zones":["school"],"channels":["siren"]}`)
	drill := s.post(`{"status":"exercise","event":"Amok","severity":"Minor","urgency":"Future","zones":["school"],"channels":["siren"]}`)
	for _, r := range []response{severe, amok, drill} {
		if r.Code != 202 || strings.Contains(r.Raw, "withheld") {
			t.Fatalf("post = %d %s; want 202, nothing withheld", r.Code, r.Raw)
		}
	}
	want := map[string]string{town.Body["id"].(string): "alarm", severe.Body["id"].(string): "alarm", amok.Body["id"].(string): "amok", drill.Body["id"].(string): "test"}
	sirens := map[string]int{town.Body["id"].(string): 3, severe.Body["id"].(string): 3, amok.Body["id"].(string): 3, drill.Body["id"].(string): 1}
	for id, n := range sirens {
		eventually(t, 5*time.Second, "sirens sounded "+id, func() bool { return s.sirenCounts(id)["delivered"] == float64(n) })
	}
	for _, rc := range s.fleet.Received() {
		if rc.Cmd.AlertID == modID {
			t.Errorf("siren %s received the Moderate thunderstorm warning", rc.Siren)
		}
		if w, ok := want[rc.Cmd.AlertID]; ok && rc.Cmd.Signal != w {
			t.Errorf("siren %s sounded %s for %s; want %s", rc.Siren, rc.Cmd.Signal, rc.Cmd.Event, w)
		}
	}
}

// A CAP Update that lowers a Severe thunderstorm warning to Moderate may
// sound no siren — and must still stop the sirens the Severe one started:
// it is stored with nothing to reach, fences the original in the same step,
// and the answer names the withheld sirens.
func TestCAPUpdateBelowPolicyStopsSirens(t *testing.T) {
	s := newStack(t, stackOptions{school: worldSchool})
	b, orig := thunderstorm(t)
	r := s.postCAP(string(b))
	if r.Code != 202 {
		t.Fatalf("Severe warning = %d %s", r.Code, r.Raw)
	}
	origID := r.Body["id"].(string)
	eventually(t, 5*time.Second, "the Severe warning sounding", func() bool { return s.sirenCounts(origID)["delivered"] == float64(3) })
	r = s.postCAP(updateOf(orig, "KSTO1055887203-lowered", "", func(in *cap.Info) { in.Severity = "Moderate" }))
	if r.Code != 202 || !strings.Contains(r.Raw, origID) || !strings.Contains(r.Raw, `"withheld"`) {
		t.Fatalf("Moderate update = %d %s; want 202 superseding %s with the sirens withheld", r.Code, r.Raw, origID)
	}
	for _, id := range sirenIDs("school", 3) {
		eventually(t, 5*time.Second, "siren "+id+" stopped", func() bool { return s.fleet.Sounding(id) == "" })
	}
}
