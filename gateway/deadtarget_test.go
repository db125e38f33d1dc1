package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// A dead siren holds no worker. With one ordinary and one urgent worker and
// more alerts to dead sirens than workers, an Extreme alert to other sirens
// is claimed by the urgent reserve at once, its retraction too, and an
// ordinary alert to live sirens is delivered as soon as the dead sirens'
// deliveries are handed back to the queue (after one hold). The dead sirens'
// deliveries wait there as "retrying", not failed, and go out when the
// sirens come back.
func TestDeadSirensNeverStallTheLane(t *testing.T) {
	dead := sirenIDs("school", 3)
	s := newStack(t, stackOptions{workers: 1, urgent: 1, offline: dead, hold: "400ms"})
	var school []string
	for i := range 3 {
		r := s.post(fmt.Sprintf(`{"status":"actual","event":"Gas %d","severity":"Severe","urgency":"Expected","zones":["school"],"channels":["siren"]}`, i))
		if r.Code != 202 {
			t.Fatalf("school alert = %d %s", r.Code, r.Raw)
		}
		school = append(school, r.Body["id"].(string))
	}
	eventually(t, 2*time.Second, "a worker busy with dead sirens", func() bool { return s.counts(school[0], "siren")["in_flight"] == float64(3) })

	start := time.Now()
	ext := s.post(`{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","zones":["townhall"],"channels":["siren"]}`)
	extID := ext.Body["id"].(string)
	eventually(t, 2*time.Second, "the Extreme alert delivered past the dead sirens", func() bool { return s.counts(extID, "siren")["delivered"] == float64(3) })
	extTook := time.Since(start)
	if r := s.retract(extID, "false_alarm"); r.Code != 202 {
		t.Fatalf("retract = %d %s", r.Code, r.Raw)
	}
	eventually(t, 2*time.Second, "its all_clear 3/3", func() bool { return s.sirenCounts(extID)["retracted"] == "3/3" })

	mod := s.post(`{"status":"actual","event":"Info","severity":"Severe","urgency":"Expected","zones":["townhall"],"channels":["siren"]}`)
	modID := mod.Body["id"].(string)
	eventually(t, 10*time.Second, "an ordinary alert to live sirens delivered behind the dead ones", func() bool {
		return s.counts(modID, "siren")["delivered"] == float64(3)
	})
	eventually(t, 5*time.Second, "the dead sirens' deliveries waiting in the queue as retrying", func() bool {
		retrying := 0
		for _, id := range school {
			c := s.counts(id, "siren")
			if c["failed"] != float64(0) || c["delivered"] != float64(0) {
				t.Fatalf("alert %s to dead sirens: %v; want nothing failed or delivered", id, c)
			}
			retrying += int(c["retrying"].(float64))
		}
		return retrying > 0
	})
	// The dashboard's channel health names the dead sirens' open breakers.
	eventually(t, 5*time.Second, "GET /v1/health/channels lists a dead siren's breaker", func() bool {
		r := s.do("GET", "/v1/health/channels", operatorKey, "", "")
		return r.Code == 200 && strings.Contains(r.Raw, `"siren/`+dead[0]+`":"open"`) && strings.Contains(r.Raw, `"kind":"siren"`)
	})
	for _, id := range dead {
		s.fleet.SetOffline(id, false)
	}
	for _, id := range school {
		eventually(t, 15*time.Second, "alert "+id+" delivered once its sirens are back", func() bool { return s.counts(id, "siren")["delivered"] == float64(3) })
	}
	t.Logf("Extreme alert delivered %v after it was posted, while the only ordinary worker was busy with dead sirens", extTook)
}

// BenchmarkPickupPastDeadSirens: from POST of an Extreme alert to its siren
// command at the (simulated) controller, with every ordinary worker busy on
// alerts to dead sirens ("dead-sirens"), beside the same with idle workers
// ("idle", the ceiling) in the same run. Run with -benchtime 200x.
func BenchmarkPickupPastDeadSirens(b *testing.B) {
	for _, mode := range []string{"idle", "dead-sirens"} {
		b.Run(mode, func(b *testing.B) {
			got := make(chan string, 64)
			o := stackOptions{workers: 2, urgent: 2, offline: sirenIDs("school", 3), limit: "rate: 10000, burst: 10000", fleetOption: func(fo *fake.FleetOptions) {
				fo.OnCommand = func(r fake.Received) {
					if r.Cmd.Signal == "alarm" && r.Siren == "townhall-00" {
						select {
						case got <- r.Cmd.AlertID:
						default:
						}
					}
				}
			}}
			s := newStack(b, o)
			if mode == "dead-sirens" {
				busyWithSchool(s)
			}
			timeToTownhall(b, s, got)
		})
	}
}

// BenchmarkClaimPastDeadTargets: from POST of an Extreme alert to the siren
// adapter being called for it (enqueue → claim → adapter, the pickup the
// target names), while every ordinary worker is busy with alerts to sirens
// that never answer ("dead-targets"), beside the same with idle workers
// ("idle", the ceiling) in the same run. The siren adapter is an in-process
// stand-in: dead sirens hold each attempt for 300 ms (an ack timeout) and
// fail; live ones are recorded the moment they are called.
func BenchmarkClaimPastDeadTargets(b *testing.B) {
	for _, mode := range []string{"idle", "dead-targets"} {
		b.Run(mode, func(b *testing.B) {
			got := make(chan string, 64)
			s := newStack(b, stackOptions{workers: 2, urgent: 2, noGateway: true, limit: "rate: 10000, burst: 10000"})
			s.startGatewayWith(adapters.Func(func(ctx context.Context, d alert.Delivery) error {
				if strings.HasPrefix(d.Target.ID, "school-") {
					select {
					case <-ctx.Done():
					case <-time.After(300 * time.Millisecond):
					}
					return errors.New("no ack")
				}
				if d.Target.ID == "townhall-00" {
					select {
					case got <- string(d.Alert.ID):
					default:
					}
				}
				return nil
			}))
			if mode == "dead-targets" {
				busyWithSchool(s)
			}
			timeToTownhall(b, s, got)
		})
	}
}

// busyWithSchool keeps every ordinary worker busy: more alerts to the
// school's (dead) sirens than there are ordinary workers.
func busyWithSchool(s *stack) {
	for i := range 4 {
		s.post(fmt.Sprintf(`{"status":"actual","event":"Gas %d","severity":"Severe","urgency":"Expected","zones":["school"],"channels":["siren"]}`, i))
	}
	time.Sleep(500 * time.Millisecond)
}

// timeToTownhall posts b.N Extreme alerts to the townhall's sirens and
// reports the p50 and p99 of the time from each POST until got names it.
func timeToTownhall(b *testing.B, s *stack, got <-chan string) {
	var took []time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		r := s.post(fmt.Sprintf(`{"status":"actual","event":"Amok %d","severity":"Extreme","urgency":"Immediate","zones":["townhall"],"channels":["siren"]}`, i))
		if r.Code != 202 {
			b.Fatalf("alert %d = %d %s", i, r.Code, r.Raw)
		}
		id := r.Body["id"].(string)
		for wait := time.After(5 * time.Second); ; {
			select {
			case a := <-got:
				if a != id {
					continue
				}
			case <-wait:
				b.Fatalf("alert %d: not at its siren within 5s", i)
			}
			break
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}
