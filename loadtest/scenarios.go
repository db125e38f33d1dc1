package loadtest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	api "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/tocsin-alert/tocsin/adapters/twilioapi"
)

// The scenarios below start their own gateway (a Stack), so that they can
// count every delivery at the fake provider and kill an instance.

// FanoutOptions configure the fanout scenario.
type FanoutOptions struct {
	Stack StackOptions
	// SendFor bounds the sending phase (60s); handed/s is measured over it.
	SendFor  time.Duration
	Progress io.Writer
}

// Fanout sends one SMS alert to every recipient. An API-only instance takes
// the alert first, so planning and queueing are timed alone and Redis's
// memory per queued delivery is measured before anything is sent; then
// Stack.Instances gateways with workers start and hand the deliveries to
// the zero-latency fake Twilio.
func Fanout(ctx context.Context, o FanoutOptions) (Result, error) {
	if o.SendFor <= 0 {
		o.SendFor = time.Minute
	}
	workers := max(o.Stack.Instances, 1)
	o.Stack.APIOnly, o.Stack.Instances = true, 0
	s, err := StartStack(ctx, o.Stack)
	if err != nil {
		return Result{}, err
	}
	defer s.Close()
	n := o.Stack.Recipients
	mem0, err := s.RedisMemory(ctx)
	if err != nil {
		return Result{}, err
	}
	t0 := time.Now()
	if _, err := s.post(ctx, "Fanout", "sms"); err != nil {
		return Result{}, err
	}
	planned := time.Since(t0)
	mem1, err := s.RedisMemory(ctx)
	if err != nil {
		return Result{}, err
	}
	for range workers {
		if _, err := s.Start(ctx, false); err != nil {
			return Result{}, err
		}
	}
	s.waitHanded(ctx, o.Progress, "fanout", n, o.SendFor)
	handed, _ := s.arrive.Counts()
	first, last := s.arrive.Span()
	rss := []int64{s.PeakRSS(0), s.PeakRSS(1)}
	for i := 1; i <= workers; i++ {
		s.Stop(i) // the ceiling gets the machine to itself, as the gateways had
	}
	// The ceiling, same run, same fake: twilio-go alone, as many sends in
	// flight as the gateways allow, for the same number of messages (up to 50k).
	ceiling, err := bareTwilio(ctx, s.Twilio.URL, min(max(handed, 1000), 50_000), workers*s.o.Workers*s.o.BatchSize)
	if err != nil {
		return Result{}, err
	}
	r := Result{Scenario: "fanout", Sent: int64(n), Accepted: int64(handed), Seconds: time.Since(t0).Seconds(), Figures: map[string]float64{
		"recipients":               float64(n),
		"planned_s":                round(planned.Seconds(), 3),
		"planned_per_s":            math.Round(float64(n) / planned.Seconds()),
		"redis_bytes_per_delivery": math.Round(float64(mem1-mem0) / float64(max(n, 1))),
		"handed":                   float64(handed),
		"handed_per_s":             math.Round(float64(handed) / max(last.Sub(first).Seconds(), 1e-3)),
		"bare_twilio_go_per_s":     math.Round(ceiling),
		"api_peak_rss_mib":         round(float64(rss[0])/(1<<20), 1),
		"worker_peak_rss_mib":      round(float64(rss[1])/(1<<20), 1),
	}}
	r.PerSecond = r.Figures["handed_per_s"]
	return r, nil
}

// RetractOptions configure the retract scenario.
type RetractOptions struct {
	Stack StackOptions
	// At is the share of recipients reached before the retraction (1: all).
	At       float64
	Progress io.Writer
}

// Retract sends an alert to the sirens and every recipient, retracts it once
// At of them were reached, and measures: how long the retract call took (the
// fence is set when it answers), each reached recipient's time from the call
// to their retraction at the provider, the sirens' all-clear, originals that
// arrived after the fence (only sends already in flight may), and any
// recipient told in the wrong order, left untold, or told without being reached.
func Retract(ctx context.Context, o RetractOptions) (Result, error) {
	if o.At <= 0 || o.At > 1 {
		o.At = 1
	}
	s, err := StartStack(ctx, o.Stack)
	if err != nil {
		return Result{}, err
	}
	defer s.Close()
	n := o.Stack.Recipients
	start := time.Now()
	id, err := s.post(ctx, "Retract", "siren", "sms")
	if err != nil {
		return Result{}, err
	}
	s.waitHanded(ctx, o.Progress, "retract: originals", int(math.Ceil(o.At*float64(n))), 10*time.Minute)
	t0 := time.Now()
	if err := s.call(ctx, "POST", "/v1/alerts/"+id+"/retract", `{"reason":"false_alarm","note":"loadtest"}`, nil); err != nil {
		return Result{}, err
	}
	fenced := time.Now()
	// Every recipient reached gets a retraction; an original in flight at the
	// fence may still land and is then retracted too.
	deadline := time.Now().Add(2 * time.Minute)
	stop := progress(ctx, o.Progress, "retract: retractions", func() (int64, int64) { h, r := s.arrive.Counts(); return int64(r), int64(h) })
	// Done when every reached recipient has a retraction and nothing has
	// arrived for a while (requests still being recorded settle first).
	last, quiet := [2]int{}, time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		h, r := s.arrive.Counts()
		if now := [2]int{h, r}; now != last {
			last, quiet = now, time.Now()
		}
		if r >= h && time.Since(quiet) > time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	hist := newHist()
	var reached, after, unordered, untold, unreached float64
	s.arrive.Snapshot(func(orig, retr, _ []int64, _ []uint16) {
		for i := range orig {
			switch {
			case orig[i] == 0 && retr[i] != 0:
				unreached++
			case orig[i] == 0:
			case retr[i] == 0:
				reached++
				untold++
			default:
				reached++
				hist.RecordValue(max((retr[i]-t0.UnixNano())/1000, 1))
				if retr[i] < orig[i] {
					unordered++
				}
			}
			if orig[i] > fenced.UnixNano() {
				after++
			}
		}
	})
	// The ceiling, same run: twilio-go alone sending as many messages.
	ceiling, err := bareTwilio(ctx, s.Twilio.URL, max(int(reached), 1000), s.o.Workers*s.o.BatchSize*max(s.o.Instances, 1))
	if err != nil {
		return Result{}, err
	}
	sirensAllClear := 0.0
	cleared := map[string]bool{}
	for _, rc := range s.Fleet.Received() {
		if rc.Cmd.Signal == "all_clear" && rc.Cmd.AlertID == id && !cleared[rc.Siren] {
			cleared[rc.Siren] = true
			sirensAllClear = max(sirensAllClear, float64(rc.At.Sub(t0).Microseconds())/1000)
		}
	}
	r := Result{Scenario: "retract", Sent: int64(n), Accepted: int64(reached), Seconds: time.Since(start).Seconds(), Latency: latencyOf(hist), Figures: map[string]float64{
		"recipients":                  float64(n),
		"reached":                     reached,
		"fence_ms":                    round(float64(fenced.Sub(t0).Microseconds())/1000, 2),
		"retraction_p99_s":            round(float64(hist.ValueAtQuantile(99))/1e6, 3),
		"retraction_last_s":           round(float64(hist.Max())/1e6, 3),
		"originals_after_fence":       after,
		"retraction_before_original":  unordered,
		"reached_not_retracted":       untold,
		"retracted_never_reached":     unreached,
		"sirens_all_clear_ms":         round(sirensAllClear, 1),
		"sirens_without_all_clear":    float64(s.o.Sirens - len(cleared)),
		"in_flight_bound_at_fence":    float64(s.o.Workers * s.o.BatchSize * max(s.o.Instances, 1)),
		"retractions_per_s_to_last_s": math.Round(reached / max(float64(hist.Max())/1e6, 1e-3)),
		"bare_twilio_go_per_s":        math.Round(ceiling),
		"bare_twilio_go_all_s":        round(reached/ceiling, 3),
	}}
	return r, nil
}

// RecoverOptions configure the recover scenario.
type RecoverOptions struct {
	Stack StackOptions
	// At is the share of recipients reached when one instance is killed (0.3).
	At       float64
	Progress io.Writer
}

// Recover sends an SMS alert through two or more instances and kills one
// with SIGKILL mid-fan-out. Deliveries go out in plan order, so every
// recipient before the furthest one reached at the kill, not yet reached,
// was in flight or held by the killed instance; and a recipient whose
// original arrives a second time after the kill was sent by the killed
// instance, which died before recording it. The time until the last of
// either arrives is the time its work took to be reclaimed and done. Lost
// and duplicated deliveries are counted from what the fake received.
func Recover(ctx context.Context, o RecoverOptions) (Result, error) {
	if o.At <= 0 || o.At >= 1 {
		o.At = 0.3
	}
	o.Stack.Instances = max(o.Stack.Instances, 2)
	s, err := StartStack(ctx, o.Stack)
	if err != nil {
		return Result{}, err
	}
	defer s.Close()
	n := o.Stack.Recipients
	start := time.Now()
	if _, err := s.post(ctx, "Recover", "sms"); err != nil {
		return Result{}, err
	}
	s.waitHanded(ctx, o.Progress, "recover: before the kill", int(o.At*float64(n)), 5*time.Minute)
	victim := len(s.procs) - 1 // not the first, which took the alert
	if err := s.Kill(victim); err != nil {
		return Result{}, err
	}
	killed := time.Now()
	frontier := -1
	s.arrive.Snapshot(func(orig, _, _ []int64, _ []uint16) {
		for i := range orig {
			if orig[i] != 0 {
				frontier = i
			}
		}
	})
	s.waitHanded(ctx, o.Progress, "recover: after the kill", n, 5*time.Minute)
	// The killed instance's work shows at the fake as gaps below the frontier
	// filled after the kill, or as sends it had made but not recorded, made
	// again after the kill: the last of either is when its work was done.
	var lost, dups, gapLast int64
	s.arrive.Snapshot(func(orig, _, again []int64, copies []uint16) {
		for i := range orig {
			switch {
			case orig[i] == 0:
				lost++
			case copies[i] > 1:
				dups += int64(copies[i] - 1)
				if again[i] > killed.UnixNano() {
					gapLast = max(gapLast, again[i])
				}
			}
			if i <= frontier && orig[i] > killed.UnixNano() {
				gapLast = max(gapLast, orig[i])
			}
		}
	})
	reclaimed := 0.0
	if gapLast > 0 {
		reclaimed = time.Unix(0, gapLast).Sub(killed).Seconds()
	}
	handed, _ := s.arrive.Counts()
	return Result{Scenario: "recover", Sent: int64(n), Accepted: int64(handed), Seconds: time.Since(start).Seconds(), Figures: map[string]float64{
		"recipients":          float64(n),
		"instances":           float64(o.Stack.Instances),
		"lease_s":             s.o.Lease.Seconds(),
		"reclaimed_done_s":    round(reclaimed, 3),
		"lost":                float64(lost),
		"duplicated":          float64(dups),
		"in_flight_bound":     float64(s.o.Workers * s.o.BatchSize),
		"handed_after_kill_s": round(time.Since(killed).Seconds(), 2),
	}}, nil
}

// SirenUnderLoadOptions configure the siren-under-load scenario.
type SirenUnderLoadOptions struct {
	Stack StackOptions
	// Count triggers, Idle apart, idle and then under load (50, 100ms).
	Count    int
	Idle     time.Duration
	Progress io.Writer
}

// SirenUnderLoad times trigger (MQTT in) → siren command (MQTT out), first
// with the gateway idle, then while an SMS alert to every recipient is
// planned and sent. The triggers come from a building system's button, signed
// with its key, on the broker, as a real panel would send them.
func SirenUnderLoad(ctx context.Context, o SirenUnderLoadOptions) (idle, loaded Result, err error) {
	s, err := StartStack(ctx, o.Stack)
	if err != nil {
		return idle, loaded, err
	}
	defer s.Close()
	p, err := newSirenProbe(o.Stack.Broker, s.prefix)
	if err != nil {
		return idle, loaded, err
	}
	defer p.close()
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(o.Stack.Broker).SetClientID(s.prefix + "-button"))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return idle, loaded, fmt.Errorf("MQTT %s: %v", o.Stack.Broker, tok.Error())
	}
	defer pub.Disconnect(100)
	var seq atomic.Int64
	fire := func(int) error {
		ev := fmt.Sprintf("%s-%d", s.prefix, seq.Add(1))
		tok := pub.Publish(s.prefix+"/trigger/"+TriggerSource, 1, false, s.trigger("button", "plant", ev))
		tok.WaitTimeout(5 * time.Second)
		return tok.Error()
	}
	idle = p.run(ctx, "siren-idle", o.Count, o.Idle, o.Progress, fire)
	posted := make(chan error, 1)
	t0 := time.Now()
	go func() { _, err := s.post(ctx, "Load", "sms"); posted <- err }() // returns once planned
	loaded = p.run(ctx, "siren-under-load", o.Count, o.Idle, o.Progress, fire)
	during := time.Since(t0)
	if err := <-posted; err != nil {
		return idle, loaded, err
	}
	handed, _ := s.arrive.Counts()
	loaded.Figures = map[string]float64{
		"recipients":             float64(o.Stack.Recipients),
		"sms_handed_during":      float64(handed),
		"probe_s":                round(during.Seconds(), 1),
		"gateway_peak_rss_mib":   round(float64(s.PeakRSS(0))/(1<<20), 1),
		"siren_p99_ms":           round(loaded.Latency.P99, 2),
		"siren_p99_idle_ms":      round(idle.Latency.P99, 2),
		"siren_timeouts_or_errs": float64(loaded.Errors + idle.Errors),
	}
	return idle, loaded, nil
}

// trigger is a signed trigger message (the gateway's trigger contract,
// written out independently).
func (s *Stack) trigger(name, zone, event string) []byte {
	ts := time.Now().UTC().Format(time.RFC3339)
	m := hmac.New(sha256.New, []byte(s.TriggerKey))
	m.Write([]byte(name + "\n" + zone + "\n" + event + "\n" + ts + "\n\n"))
	b, _ := json.Marshal(map[string]string{"trigger": name, "zone": zone, "event_id": event, "timestamp": ts, "hmac": hex.EncodeToString(m.Sum(nil))})
	return b
}

// post sends one alert to zone town on the given channels and returns its id.
func (s *Stack) post(ctx context.Context, event string, channels ...string) (string, error) {
	body, _ := json.Marshal(map[string]any{"status": "actual", "event": fmt.Sprintf("%s %d", event, time.Now().UnixNano()),
		"severity": "Extreme", "urgency": "Immediate", "headline": "Lasttest", "zones": []string{"town"}, "channels": channels})
	var a struct {
		ID string `json:"id"`
	}
	if err := s.call(ctx, "POST", "/v1/alerts", string(body), &a); err != nil {
		return "", err
	}
	return a.ID, nil
}

// call makes one API request to the first instance; a large fan-out is
// planned before the answer, so the timeout is generous.
func (s *Stack) call(ctx context.Context, method, path, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, s.URL()+path, bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.Key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s = %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// waitHanded waits until want recipients have their original, or for limit.
func (s *Stack) waitHanded(ctx context.Context, w io.Writer, name string, want int, limit time.Duration) {
	stop := progress(ctx, w, name, func() (int64, int64) { h, _ := s.arrive.Counts(); return int64(h), int64(want) })
	defer stop()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if h, _ := s.arrive.Counts(); h >= want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bareTwilio sends n messages through twilio-go (with Tocsin's client
// settings) to the fake from inFlight goroutines and returns messages/s: the
// ceiling of any gateway's sending on this machine.
func bareTwilio(ctx context.Context, url string, n, inFlight int) (float64, error) {
	c, err := twilioapi.New(twilioapi.Account{SID: stackSID, AuthToken: stackToken, BaseURL: url})
	if err != nil {
		return 0, err
	}
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range inFlight {
		wg.Add(1)
		go func() { // exits when n are sent
			defer wg.Done()
			for i := next.Add(1); i <= int64(n) && ctx.Err() == nil; i = next.Add(1) {
				p := (&api.CreateMessageParams{}).SetTo(fmt.Sprintf("+49302%07d", i)).SetFrom("+4930100000").SetBody("WARNUNG: Lasttest.").
					SetValidityPeriod(3600).SetStatusCallback("http://127.0.0.1:1/v1/callbacks/twilio/x")
				if _, err := c.Api.CreateMessage(p); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return 0, fmt.Errorf("bare twilio-go: %d of %d sends failed", f, n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}
