package gateway_test

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tocsin-alert/tocsin/cap"
	"github.com/tocsin-alert/tocsin/gateway"
)

// TestGatewayModel drives random sequences through the whole gateway — real
// Redis, real Mosquitto, simulated siren controllers that obey the siren
// contract — and checks the safety rules after every step against a model:
//
//   - building systems press the amok button (two panels of the school),
//     reset their own presses, replay a reset; a dispatcher posts JSON alerts
//     of one event at varying severity, and a real CAP warning, its Updates
//     and its Cancel; an operator retracts any alert; one siren goes dead
//     and comes back;
//   - every trigger and post is decided as the model's dedup rules say
//     (nothing genuine swallowed: after a retraction or a reset at every
//     panel a press is a new alert; an escalation is a new alert);
//   - a reset retracts only when no other panel holds the alert raised;
//   - no alarm of an alert reaches a siren after its retraction;
//   - every live siren sounds exactly for the alerts in force for its zone:
//     each alert sounds, a retraction silences only its own alert, an Update
//     never silences the warning it continues, nothing stays sounding after
//     its retraction.
//
// The stack and the model live across rapid's sequences (each sequence goes
// on from the state the last one left, as Redis does). make test runs 6
// sequences; TOCSIN_GATEWAY_MODEL_CHECKS (or -rapid.checks) sets more.
func TestGatewayModel(t *testing.T) {
	checks := "6"
	if v := os.Getenv("TOCSIN_GATEWAY_MODEL_CHECKS"); v != "" {
		checks = v
	}
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if !set {
		old := flag.Lookup("rapid.checks").Value.String()
		flag.Set("rapid.checks", checks)
		defer flag.Set("rapid.checks", old)
	}
	s := newStack(t, stackOptions{triggers: true, window: "10m", limit: "rate: 10000, burst: 10000", school: worldSchool})
	storm, _ := thunderstorm(t)
	p := newPanel(t, s)
	m := &gModel{alerts: map[string]*gAlert{}, fps: map[string]string{}}
	sirens := sirenIDs("school", 3)
	rapid.Check(t, func(rt *rapid.T) {
		m.iter++
		m.calm(rt, s, sirens) // also after a failed sequence, before rapid replays it
		rt.Repeat(map[string]func(*rapid.T){
			"press": func(rt *rapid.T) {
				src := rapid.SampledFrom([]string{"school-button", "school-panel-2"}).Draw(rt, "panel")
				tr := trigger(src, "amok-button", "school", time.Now())
				prev, absorbs := m.live("trigger")
				p.send(src, tr)
				ack := p.ack(tr.EventID)
				id := string(ack.AlertID)
				switch {
				case absorbs && (ack.Status != "duplicate" || id != prev.id):
					rt.Fatalf("press by %s: %+v; the model says a duplicate of %s", src, ack, prev.id)
				case !absorbs && (ack.Status != "accepted" || m.alerts[id] != nil):
					rt.Fatalf("press by %s: %+v; the model says a new alert (a genuine alarm must sound)", src, ack)
				}
				a := m.add(id, "trigger", 0, absorbs)
				a.raised[src] = true
				a.presses = append(a.presses, &press{src: src, tr: tr, alert: a})
				rt.Logf("press %s -> %s %s", src, ack.Status, id)
			},
			"reset": func(rt *rapid.T) {
				var open []*press
				for _, a := range m.alerts {
					if a.kind == "trigger" && !a.retracted && time.Since(a.created) < 2500*time.Millisecond {
						for _, pr := range a.presses {
							if !pr.reset {
								open = append(open, pr)
							}
						}
					}
				}
				if len(open) == 0 {
					rt.Skip("no recent press to reset")
				}
				slices.SortFunc(open, func(x, y *press) int { return strings.Compare(x.tr.EventID, y.tr.EventID) })
				pr := rapid.SampledFrom(open).Draw(rt, "press")
				pr.reset = true
				a := pr.alert
				r := resetOf(pr.src, pr.tr)
				p.send(pr.src, r)
				ack := p.ack(r.EventID)
				delete(a.raised, pr.src)
				want := "lowered"
				if len(a.raised) == 0 {
					want = "reset"
				}
				if ack.Status != want {
					rt.Fatalf("reset of %s by %s: %+v; the model says %s (raised by %v)", a.id, pr.src, ack, want, slices.Sorted(maps.Keys(a.raised)))
				}
				if want == "reset" {
					m.retracted(a)
				}
				// A replay of the same reset changes nothing.
				p.mu.Lock()
				delete(p.acks, r.EventID)
				p.mu.Unlock()
				p.send(pr.src, r)
				if again := p.ack(r.EventID); again.Status != "rejected" {
					rt.Fatalf("replayed reset: %+v; want rejected", again)
				}
				rt.Logf("reset %s by %s -> %s", a.id, pr.src, ack.Status)
			},
			"post": func(rt *rapid.T) {
				sev := rapid.SampledFrom([]string{"Severe", "Extreme"}).Draw(rt, "severity")
				rank := map[string]int{"Severe": 3, "Extreme": 4}[sev]
				r := s.post(fmt.Sprintf(`{"status":"actual","event":"Gas","severity":%q,"urgency":"Immediate","zones":["school"],"channels":["siren"]}`, sev))
				prev, live := m.live("json")
				absorbs := live && rank <= prev.sev
				id, _ := r.Body["id"].(string)
				switch {
				case absorbs && (r.Code != 200 || id != prev.id):
					rt.Fatalf("post %s = %d %s; the model says a duplicate of %s", sev, r.Code, r.Raw, prev.id)
				case !absorbs && (r.Code != 202 || m.alerts[id] != nil):
					rt.Fatalf("post %s = %d %s; the model says a new alert", sev, r.Code, r.Raw)
				}
				m.add(id, "json", rank, absorbs)
				rt.Logf("post %s -> %d %s", sev, r.Code, id)
			},
			"cap alert": func(rt *rapid.T) {
				m.n++
				doc := strings.Replace(string(storm), "KSTO1055887203", fmt.Sprintf("KSTO-model-%d-%d", time.Now().UnixNano(), m.n), 1)
				prev, absorbs := m.live("cap")
				r := s.postCAP(doc)
				id, _ := r.Body["id"].(string)
				switch {
				case absorbs && (r.Code != 200 || id != prev.id):
					rt.Fatalf("CAP alert = %d %s; the model says a duplicate of %s", r.Code, r.Raw, prev.id)
				case !absorbs && (r.Code != 202 || m.alerts[id] != nil):
					rt.Fatalf("CAP alert = %d %s; the model says a new alert", r.Code, r.Raw)
				}
				a := m.add(id, "cap", 0, absorbs)
				parsed, _ := cap.Parse([]byte(doc))
				m.head = &capHead{doc: parsed, alert: a}
				rt.Logf("CAP alert %s -> %d %s", parsed.Identifier, r.Code, id)
			},
			"cap update": func(rt *rapid.T) {
				if m.head == nil || m.head.alert.retracted {
					rt.Skip("no CAP message in force")
				}
				m.n++
				doc := updateOf(m.head.doc, fmt.Sprintf("KSTO-model-u-%d-%d", time.Now().UnixNano(), m.n), "EXTENDED")
				r := s.postCAP(doc)
				id, _ := r.Body["id"].(string)
				if r.Code != 202 || m.alerts[id] != nil {
					rt.Fatalf("CAP update of %s = %d %s; want a new alert superseding it", m.head.alert.id, r.Code, r.Raw)
				}
				m.retracted(m.head.alert)
				parsed, _ := cap.Parse([]byte(doc))
				m.head = &capHead{doc: parsed, alert: m.add(id, "cap-update", 0, false)}
				rt.Logf("CAP update -> %s", id)
			},
			"cap cancel": func(rt *rapid.T) {
				if m.head == nil || m.head.alert.retracted {
					rt.Skip("no CAP message in force")
				}
				m.n++
				m.retracted(m.head.alert)
				r := s.postCAP(cancelOf(m.head.doc, fmt.Sprintf("KSTO-model-c-%d-%d", time.Now().UnixNano(), m.n)))
				if r.Code != 202 || !strings.Contains(r.Raw, m.head.alert.id) {
					rt.Fatalf("CAP cancel of %s = %d %s; want it retracted", m.head.alert.id, r.Code, r.Raw)
				}
				rt.Logf("CAP cancel %s", m.head.alert.id)
			},
			"retract": func(rt *rapid.T) {
				var open []string
				for id, a := range m.alerts {
					if !a.retracted {
						open = append(open, id)
					}
				}
				if len(open) == 0 {
					rt.Skip("nothing to retract")
				}
				slices.Sort(open)
				id := rapid.SampledFrom(open).Draw(rt, "alert")
				m.retracted(m.alerts[id]) // before the call: a command after this moment is late
				if r := s.retract(id, "false_alarm"); r.Code != 202 {
					rt.Fatalf("retract %s = %d %s", id, r.Code, r.Raw)
				}
				rt.Logf("retract %s", id)
			},
			"dead siren": func(rt *rapid.T) {
				m.dead = !m.dead
				s.fleet.SetOffline("school-01", m.dead)
				rt.Logf("school-01 dead: %v", m.dead)
			},
			"": func(rt *rapid.T) { m.check(rt, s, sirens) },
		})
		m.calm(rt, s, sirens)
	})
}

// calm brings the dead siren back and retracts every alert in force, and
// checks that every siren falls quiet: each sequence starts from the same
// calm state (every earlier alert retracted), so rapid can replay it.
func (m *gModel) calm(rt *rapid.T, s *stack, sirens []string) {
	m.dead = false
	s.fleet.SetOffline("school-01", false)
	for _, a := range m.alerts {
		if !a.retracted {
			m.retracted(a)
			if r := s.retract(a.id, "all_clear"); r.Code != 202 && r.Code != 409 {
				rt.Fatalf("retract %s = %d %s", a.id, r.Code, r.Raw)
			}
		}
	}
	m.check(rt, s, sirens)
}

type press struct {
	src   string
	tr    gateway.Trigger
	alert *gAlert
	reset bool
}

type gAlert struct {
	id, kind  string
	sev       int // severity rank of a JSON alert
	created   time.Time
	retracted bool
	fenceAt   time.Time
	raised    map[string]bool
	presses   []*press
}

// capHead is the newest CAP message of the chain and the alert it is in.
type capHead struct {
	doc   *cap.Alert
	alert *gAlert
}

type gModel struct {
	iter   int
	n      int
	head   *capHead
	alerts map[string]*gAlert
	fps    map[string]string // fingerprint -> the latest alert of it
	dead   bool
}

// live is the alert a fingerprint names if it may absorb a request: not
// retracted (a reset at every panel retracts it too).
func (m *gModel) live(fp string) (*gAlert, bool) {
	a := m.alerts[m.fps[fp]]
	return a, a != nil && !a.retracted
}

// add records a request's outcome: a new alert, or the one that absorbed it.
func (m *gModel) add(id, fp string, sev int, absorbed bool) *gAlert {
	if absorbed {
		return m.alerts[id]
	}
	a := &gAlert{id: id, kind: fp, sev: sev, created: time.Now(), raised: map[string]bool{}}
	m.alerts[id] = a
	m.fps[fp] = id
	return a
}

func (m *gModel) retracted(a *gAlert) {
	if !a.retracted {
		a.retracted, a.fenceAt = true, time.Now()
	}
}

// check waits for the sirens to settle and checks them against the model:
// each live siren sounds exactly for the alerts in force, and no alarm came
// after its alert's retraction.
func (m *gModel) check(rt *rapid.T, s *stack, sirens []string) {
	var live []string
	for id, a := range m.alerts {
		if !a.retracted {
			live = append(live, id)
		}
	}
	slices.Sort(live)
	deadline := time.Now().Add(10 * time.Second)
	for _, sr := range sirens {
		if m.dead && sr == "school-01" {
			continue
		}
		for {
			got := s.fleet.Active(sr)
			slices.Sort(got)
			if slices.Equal(got, live) {
				break
			}
			if time.Now().After(deadline) {
				rt.Fatalf("SIREN %s sounds for %v; the alerts in force are %v", sr, got, live)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, rc := range s.fleet.Received() {
		a := m.alerts[rc.Cmd.AlertID]
		if a != nil && a.retracted && rc.Cmd.Signal == "alarm" && rc.At.After(a.fenceAt.Add(300*time.Millisecond)) {
			rt.Fatalf("ORIGINAL AFTER THE FENCE: %s got the alarm of %s %v after its retraction", rc.Siren, a.id, rc.At.Sub(a.fenceAt))
		}
	}
}
