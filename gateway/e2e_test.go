package gateway_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// byDelivery groups what the fleet received per siren, in arrival order.
func bySiren(rs []fake.Received, alertID string) map[string][]fake.Received {
	m := map[string][]fake.Received{}
	for _, r := range rs {
		if r.Cmd.AlertID == alertID {
			m[r.Siren] = append(m[r.Siren], r)
		}
	}
	return m
}

func TestAlertSoundsSirensAndIsDelivered(t *testing.T) {
	s := newStack(t, stackOptions{})
	r := s.post(amok("school"))
	if r.Code != 202 || r.Body["state"] != "queued" || r.Body["targets"] != float64(3) {
		t.Fatalf("POST = %d %s; want 202 queued with 3 targets", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	eventually(t, 10*time.Second, "3 sirens delivered", func() bool {
		c := s.sirenCounts(id)
		return c["delivered"] == float64(3)
	})
	if st := s.get(id).Body["state"]; st != "completed" {
		t.Fatalf("state = %v, want completed", st)
	}
	got := bySiren(s.fleet.Received(), id)
	for _, sid := range sirenIDs("school", 3) {
		if len(got[sid]) == 0 || got[sid][0].Cmd.Signal != "alarm" || got[sid][0].Cmd.DeliveryID == "" || got[sid][0].Cmd.ExpiresAt.IsZero() {
			t.Errorf("siren %s received %+v, want an alarm with delivery_id and expires_at", sid, got[sid])
		}
	}
	for _, sid := range sirenIDs("townhall", 3) {
		if len(got[sid]) > 0 {
			t.Errorf("siren %s outside the alert's zone received %+v", sid, got[sid])
		}
	}
	d := s.do("GET", "/v1/alerts/"+id+"/deliveries", dispatchKey, "", "")
	if d.Code != 200 || strings.Count(d.Raw, `"state":"delivered"`) != 3 {
		t.Fatalf("deliveries = %d %s; want 3 delivered", d.Code, d.Raw)
	}
}

// Promise 9: test and exercise alerts reach only drill targets, as the test signal.
func TestExerciseReachesOnlyDrillSirensAsTest(t *testing.T) {
	s := newStack(t, stackOptions{})
	r := s.post(`{"status":"exercise","event":"Probealarm","severity":"Extreme","urgency":"Immediate","zones":["school","townhall"]}`)
	if r.Code != 202 || r.Body["targets"] != float64(2) {
		t.Fatalf("POST = %d %s; want 202 with the 2 drill sirens", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	eventually(t, 10*time.Second, "2 drill sirens delivered", func() bool { return s.sirenCounts(id)["delivered"] == float64(2) })
	got := bySiren(s.fleet.Received(), id)
	if len(got) != 2 {
		t.Fatalf("sirens reached = %v, want only school-00 and townhall-00", got)
	}
	for _, sid := range []string{"school-00", "townhall-00"} {
		if len(got[sid]) == 0 || got[sid][0].Cmd.Signal != "test" || !got[sid][0].Cmd.Exercise {
			t.Errorf("siren %s received %+v, want the test signal marked exercise", sid, got[sid])
		}
	}
}

// Promises 4 and 5: a retraction in the middle of delivery leaves never-attempted
// sirens silent and gives every attempted siren its all_clear after its alarm.
func TestRetractionMidDelivery(t *testing.T) {
	s := newStack(t, stackOptions{sirens: 20, batch: 2, workers: 1, fleetDelay: 100 * time.Millisecond})
	r := s.post(amok("school", "townhall"))
	if r.Code != 202 || r.Body["targets"] != float64(40) {
		t.Fatalf("POST = %d %s", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	eventually(t, 10*time.Second, "some sirens sounding", func() bool { return len(bySiren(s.fleet.Received(), id)) >= 4 })
	rr := s.retract(id, "false_alarm")
	retractedAt := time.Now()
	if rr.Code != 202 || rr.Body["state"] != "retracted" {
		t.Fatalf("retract = %d %s", rr.Code, rr.Raw)
	}
	var c map[string]any
	eventually(t, 10*time.Second, "every owed retraction delivered", func() bool {
		c = s.sirenCounts(id)
		return c["in_flight"] == float64(0) && c["retracted"] == fmt.Sprintf("%v/%v", c["retractions_owed"], c["retractions_owed"])
	})
	got := bySiren(s.fleet.Received(), id)
	alarmed := 0
	for _, z := range []string{"school", "townhall"} {
		for _, sid := range sirenIDs(z, 20) {
			rs := got[sid]
			if len(rs) == 0 {
				continue // never attempted: must stay silent, and did
			}
			first := rs[0]
			if first.Cmd.Signal != "alarm" {
				t.Errorf("siren %s: first command %s, want alarm", sid, first.Cmd.Signal)
				continue
			}
			alarmed++
			if first.At.After(retractedAt.Add(500 * time.Millisecond)) {
				t.Errorf("siren %s: alarm started %v after the retraction was accepted", sid, first.At.Sub(retractedAt))
			}
			last := rs[len(rs)-1]
			lastAlarm := slices.IndexFunc(rs, func(r fake.Received) bool { return r.Cmd.Signal == "all_clear" })
			if last.Cmd.Signal != "all_clear" || lastAlarm < 0 || slices.ContainsFunc(rs[lastAlarm:], func(r fake.Received) bool { return r.Cmd.Signal == "alarm" }) {
				t.Errorf("siren %s: commands %v, want its alarm(s) then all_clear", sid, signals(rs))
			}
		}
	}
	if alarmed == 0 || alarmed == 40 {
		t.Fatalf("%d of 40 sirens alarmed; the retraction should have landed mid-delivery", alarmed)
	}
	if c["retractions_owed"] != float64(alarmed) {
		t.Fatalf("retractions owed %v, but %d sirens heard the alarm", c["retractions_owed"], alarmed)
	}
	if c["cancelled"] != float64(40-alarmed) {
		t.Fatalf("cancelled %v, want %d (the never-attempted sirens)", c["cancelled"], 40-alarmed)
	}
	t.Logf("%d sirens alarmed and got all_clear; %d never attempted stayed silent; retracted %v", alarmed, 40-alarmed, c["retracted"])
}

func signals(rs []fake.Received) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Cmd.Signal
	}
	return out
}

// Promise 10: an unacked command is resent until the controller acks it;
// between attempts the silent siren waits in the queue (retrying), or is
// being tried (in flight) — never failed.
func TestSirenWithoutAckIsResentUntilAcked(t *testing.T) {
	s := newStack(t, stackOptions{offline: []string{"school-01"}})
	id := s.post(amok("school")).Body["id"].(string)
	eventually(t, 10*time.Second, "two sirens delivered", func() bool { return s.sirenCounts(id)["delivered"] == float64(2) })
	time.Sleep(time.Second)
	if c := s.sirenCounts(id); c["in_flight"].(float64)+c["retrying"].(float64) != 1 || c["failed"] != float64(0) {
		t.Fatalf("counts = %v, want the silent siren still in flight or retrying", c)
	}
	s.fleet.SetOffline("school-01", false)
	eventually(t, 10*time.Second, "the silent siren delivered once it acks", func() bool { return s.sirenCounts(id)["delivered"] == float64(3) })
	if n := len(bySiren(s.fleet.Received(), id)["school-01"]); n < 2 {
		t.Fatalf("school-01 received %d commands, want resends", n)
	}
}
