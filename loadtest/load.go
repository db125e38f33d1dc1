package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/mattn/go-isatty"
)

// Latency is a scenario's latency distribution in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	ms := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
	return Latency{P50: ms(50), P95: ms(95), P99: ms(99), P999: ms(99.9), Max: float64(h.Max()) / 1000}
}

// newHist records microseconds from 1µs to 60s at 3 significant figures.
func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) }

// Result is one scenario's outcome.
type Result struct {
	Scenario   string  `json:"scenario"`
	Sent       int64   `json:"sent"`
	Accepted   int64   `json:"accepted"`
	Duplicates int64   `json:"duplicates"`
	Errors     int64   `json:"errors"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"accepted_per_second"`
	Latency    Latency `json:"latency"`
	// Figures are a scenario's own measurements, named with their unit.
	Figures map[string]float64 `json:"figures,omitempty"`
}

// Summary is the one line a scenario prints.
func (r Result) Summary() string {
	if r.Figures != nil {
		names := slices.Sorted(maps.Keys(r.Figures))
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = fmt.Sprintf("%s %s", n, strconv.FormatFloat(r.Figures[n], 'f', -1, 64))
		}
		line := r.Scenario + ": " + strings.Join(parts, ", ")
		if r.Latency.Max > 0 {
			line += fmt.Sprintf("; latency p50 %.2fms p99 %.2fms max %.2fms", r.Latency.P50, r.Latency.P99, r.Latency.Max)
		}
		return line
	}
	return fmt.Sprintf("%s: %d sent, %d accepted (%.0f/s), %d duplicates, %d errors in %.1fs; latency p50 %.2fms p95 %.2fms p99 %.2fms p99.9 %.2fms max %.2fms",
		r.Scenario, r.Sent, r.Accepted, r.PerSecond, r.Duplicates, r.Errors, r.Seconds,
		r.Latency.P50, r.Latency.P95, r.Latency.P99, r.Latency.P999, r.Latency.Max)
}

// loopbackOnly refuses targets off this machine: load is aimed at loopback.
func loopbackOnly(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q: want a URL such as http://127.0.0.1:8080", raw)
	}
	h := u.Hostname()
	if ip := net.ParseIP(h); h != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q: load tests aim at loopback only", raw)
	}
	return nil
}

// IngestOptions configure the ingest scenario.
type IngestOptions struct {
	URL, Key string
	// Senders is the number of concurrent senders (16).
	Senders int
	// Duration or Count bound the run (whichever ends first; 10s if neither).
	Duration time.Duration
	Count    int64
	// Repeat is the share (0..1) of requests that reuse an earlier
	// Idempotency-Key, to measure duplicate handling.
	Repeat float64
	Zones  []string
	// Channels, if set, limits the alerts' channel kinds.
	Channels []string
	// Progress, if a terminal, gets a progress line.
	Progress io.Writer
}

// Ingest posts alerts from concurrent senders, as dispatch centres would.
func Ingest(ctx context.Context, o IngestOptions) (Result, error) {
	if err := loopbackOnly(o.URL); err != nil {
		return Result{}, err
	}
	if o.Senders <= 0 {
		o.Senders = 16
	}
	if o.Duration <= 0 && o.Count <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Senders * 2}, Timeout: 10 * time.Second}
	var sent, accepted, dups, errs atomic.Int64
	var mu sync.Mutex
	hist := newHist()
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	stop := progress(ctx, o.Progress, "ingest", func() (int64, int64) { return sent.Load(), o.Count })
	start := time.Now()
	var wg sync.WaitGroup
	for w := range o.Senders {
		wg.Add(1)
		go func() { // exits when the run ends
			defer wg.Done()
			local := newHist()
			defer func() { mu.Lock(); hist.Merge(local); mu.Unlock() }()
			last := ""
			for ctx.Err() == nil {
				n := sent.Add(1)
				if o.Count > 0 && n > o.Count {
					return
				}
				key := fmt.Sprintf("lt-%s-%d-%d", run, w, n)
				if last != "" && o.Repeat > 0 && rand.Float64() < o.Repeat {
					key = last // this sender's previous alert again
				}
				last = key
				t0 := time.Now()
				resp, err := postAlert(ctx, client, o.URL, o.Key, key, map[string]any{"status": "actual", "event": "Load " + key,
					"severity": "Severe", "urgency": "Immediate", "headline": "Lasttest", "zones": o.Zones, "channels": o.Channels})
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					} else {
						sent.Add(-1)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				local.RecordValue(time.Since(t0).Microseconds())
				switch resp.StatusCode {
				case http.StatusAccepted:
					accepted.Add(1)
				case http.StatusOK:
					dups.Add(1)
				default:
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	stop()
	secs := time.Since(start).Seconds()
	r := Result{Scenario: "ingest", Sent: accepted.Load() + dups.Load() + errs.Load(), Accepted: accepted.Load(), Duplicates: dups.Load(),
		Errors: errs.Load(), Seconds: secs, Latency: latencyOf(hist)}
	r.PerSecond = float64(r.Accepted) / secs
	return r, nil
}

// PickupOptions configure the pickup scenario.
type PickupOptions struct {
	URL, Key string
	// Broker is the MQTT broker the gateway's sirens listen on.
	Broker, TopicPrefix string
	Zone                string
	// Count alerts, one at a time, Idle apart (20, 200ms).
	Count int
	Idle  time.Duration
	// Progress, if a terminal, gets a progress line.
	Progress io.Writer
}

// Pickup measures accept → first siren command on the wire: it posts one
// alert at a time after an idle gap and watches the sirens' command topics
// as a controller would (it does not ack; the fleet, if any, does).
func Pickup(ctx context.Context, o PickupOptions) (Result, error) {
	if err := loopbackOnly(o.URL); err != nil {
		return Result{}, err
	}
	if o.TopicPrefix == "" {
		o.TopicPrefix = "tocsin/v1"
	}
	p, err := newSirenProbe(o.Broker, o.TopicPrefix)
	if err != nil {
		return Result{}, fmt.Errorf("pickup: %w", err)
	}
	defer p.close()
	client := &http.Client{Timeout: 10 * time.Second}
	return p.run(ctx, "pickup", o.Count, o.Idle, o.Progress, func(i int) error {
		resp, err := postAlert(ctx, client, o.URL, o.Key, "", map[string]any{"status": "actual", "event": fmt.Sprintf("Pickup %d-%d", time.Now().UnixNano(), i),
			"severity": "Extreme", "urgency": "Immediate", "zones": []string{o.Zone}, "channels": []string{"siren"}})
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("POST /v1/alerts = %d", resp.StatusCode)
		}
		return nil
	}), nil
}

// sirenProbe watches every siren's command topic as a controller would and
// times, after each fire, the first command of an alert it has not seen.
// Fires are one at a time, so that command is the fire's.
type sirenProbe struct {
	c     mqtt.Client
	mu    sync.Mutex
	seen  map[string]bool
	armed bool
	next  chan time.Time
}

func newSirenProbe(broker, prefix string) (*sirenProbe, error) {
	if err := loopbackOnly(broker); err != nil {
		return nil, err
	}
	p := &sirenProbe{seen: map[string]bool{}, next: make(chan time.Time, 1)}
	p.c = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("tocsin-loadtest-%d-%d", os.Getpid(), time.Now().UnixNano())))
	if tok := p.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("MQTT %s: %v", broker, tok.Error())
	}
	tok := p.c.Subscribe(prefix+"/siren/+/cmd", 1, func(_ mqtt.Client, m mqtt.Message) {
		at := time.Now()
		var cmd struct {
			AlertID string `json:"alert_id"`
		}
		if json.Unmarshal(m.Payload(), &cmd) != nil {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.seen[cmd.AlertID] {
			return
		}
		p.seen[cmd.AlertID] = true
		if p.armed {
			p.armed = false
			p.next <- at
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		p.close()
		return nil, fmt.Errorf("subscribe: %v", tok.Error())
	}
	return p, nil
}

func (p *sirenProbe) close() { p.c.Disconnect(100) }

// run fires count times (20), idle apart (200ms), and records each fire's
// latency to its first siren command.
func (p *sirenProbe) run(ctx context.Context, name string, count int, idle time.Duration, w io.Writer, fire func(i int) error) Result {
	if count <= 0 {
		count = 20
	}
	if idle <= 0 {
		idle = 200 * time.Millisecond
	}
	hist := newHist()
	var done, errs atomic.Int64
	stop := progress(ctx, w, name, func() (int64, int64) { return done.Load(), int64(count) })
	defer stop()
	start := time.Now()
	for i := 0; i < count && ctx.Err() == nil; i++ {
		time.Sleep(idle)
		p.mu.Lock()
		p.armed = true
		p.mu.Unlock()
		t0 := time.Now()
		if err := fire(i); err != nil {
			errs.Add(1)
			continue
		}
		select {
		case at := <-p.next:
			hist.RecordValue(at.Sub(t0).Microseconds())
			done.Add(1)
		case <-time.After(5 * time.Second):
			errs.Add(1)
		case <-ctx.Done():
		}
		p.mu.Lock()
		p.armed = false
		p.mu.Unlock()
		select { // a command that came after the timeout belongs to no fire
		case <-p.next:
		default:
		}
	}
	stop()
	r := Result{Scenario: name, Sent: done.Load() + errs.Load(), Accepted: done.Load(), Errors: errs.Load(), Seconds: time.Since(start).Seconds(), Latency: latencyOf(hist)}
	r.PerSecond = float64(r.Accepted) / r.Seconds
	return r
}

// postAlert sends one JSON alert as a dispatch centre would, with an
// Idempotency-Key when idem is set.
func postAlert(ctx context.Context, c *http.Client, url, key, idem string, alert map[string]any) (*http.Response, error) {
	body, _ := json.Marshal(alert)
	req, err := http.NewRequestWithContext(ctx, "POST", url+"/v1/alerts", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	return c.Do(req)
}

// progress draws "scenario n/total" on a terminal until stop is called.
func progress(ctx context.Context, w io.Writer, name string, now func() (done, total int64)) (stop func()) {
	f, ok := w.(*os.File)
	if !ok || !isatty.IsTerminal(f.Fd()) {
		return func() {}
	}
	end := make(chan struct{})
	var once sync.Once
	go func() { // exits when stop is called
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-end:
				fmt.Fprint(f, "\r\033[K")
				return
			case <-t.C:
				d, total := now()
				if total > 0 {
					fmt.Fprintf(f, "\r%s %d/%d [%-30s]", name, d, total, bar(d, total))
				} else {
					fmt.Fprintf(f, "\r%s %d", name, d)
				}
			}
		}
	}()
	return func() { once.Do(func() { close(end) }) }
}

func bar(d, total int64) string {
	n := int(min(d, total) * 30 / max(total, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = '='
	}
	return string(b)
}
