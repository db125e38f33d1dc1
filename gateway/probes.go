package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/delivery"
	"github.com/tocsin-alert/tocsin/priority"
)

// Probe is one synthetic check: can Tocsin still reach this target? Run
// returns nil when it can.
type Probe struct {
	Kind   string // "siren", "twilio"
	Target string
	Zone   string // the target's zone, if it has one
	Every  time.Duration
	// Timeout, if set, replaces probes.timeout (a real test SMS waits for
	// the provider's delivery report).
	Timeout time.Duration
	Run     func(ctx context.Context) error
}

// ProbeResult is a probe's last outcome, kept in Redis so every instance
// answers the same.
type ProbeResult struct {
	Kind   string    `json:"kind"`
	Target string    `json:"target"`
	OK     bool      `json:"ok"`
	At     time.Time `json:"at"`
	// Since is when the probe last changed between ok and failing.
	Since  time.Time `json:"since"`
	Detail string    `json:"detail,omitempty"`
	// Told is when the on-duty operators were last told this probe failed.
	Told *time.Time `json:"told,omitempty"`
}

// probeRetell is how long a probe that fails again soon after it passed
// (a flapping target) stays quiet: the operators know of it.
const probeRetell = time.Hour

func (g *Gateway) probeKey() string { return g.cfg.Redis.KeyPrefix + ":probes" }

// runProbes runs every probe on its schedule until ctx ends. Each round of
// a probe is taken by one instance only (a lock in Redis for the round), so
// N instances do not probe a siren N times.
func (g *Gateway) runProbes(ctx context.Context) {
	if g.rdb == nil || len(g.probes) == 0 {
		return
	}
	host, _ := os.Hostname()
	var stops []func()
	for _, p := range g.probes {
		lock := g.cfg.Redis.KeyPrefix + ":probe:lock:" + p.Kind + "/" + p.Target
		stops = append(stops, delivery.Every(ctx, p.Every, func(ctx context.Context) {
			if ok, err := g.rdb.SetNX(ctx, lock, host, p.Every*9/10).Result(); err != nil || !ok {
				return // another instance has this round, or Redis is away (readiness says so)
			}
			pctx, cancel := context.WithTimeout(ctx, cmp.Or(p.Timeout, g.cfg.Probes.Timeout))
			err := p.Run(pctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			g.recordProbe(ctx, p, err)
		}))
	}
	<-ctx.Done()
	for _, stop := range stops {
		stop()
	}
}

// recordProbe stores a probe's outcome and, when it starts failing, tells
// the on-duty operators.
func (g *Gateway) recordProbe(ctx context.Context, p Probe, err error) {
	now := time.Now().UTC()
	field := p.Kind + "/" + p.Target
	r := ProbeResult{Kind: p.Kind, Target: p.Target, OK: err == nil, At: now, Since: now}
	if err != nil {
		r.Detail = err.Error()
	}
	var prev ProbeResult
	known := false
	if b, e := g.rdb.HGet(ctx, g.probeKey(), field).Bytes(); e == nil && json.Unmarshal(b, &prev) == nil {
		known = true
		if prev.OK == r.OK {
			r.Since = prev.Since
		}
		r.Told = prev.Told
	}
	tell := err != nil && (!known || prev.OK) && (r.Told == nil || now.Sub(*r.Told) >= probeRetell)
	if tell {
		r.Told = &now
	}
	b, _ := json.Marshal(r)
	if e := g.rdb.HSet(ctx, g.probeKey(), field, b).Err(); e != nil {
		g.log.Warn().Err(e).Str("probe", field).Msg("Probe result not stored")
	}
	switch {
	case err != nil && (!known || prev.OK):
		g.log.Error().Err(err).Str("probe", field).Msg("Probe failed: this target may not be reachable in an emergency")
		if tell {
			g.notifyProbe(ctx, p, r)
		}
	case err == nil && known && !prev.OK:
		g.log.Info().Str("probe", field).Time("failing_since", prev.Since).Msg("Probe passes again")
	}
}

// notifyProbe tells every on-duty operator with a phone that a probe
// started failing, on the configured channels other than the probe's own.
func (g *Gateway) notifyProbe(ctx context.Context, p Probe, r ProbeResult) {
	var targets []alert.Target
	var kinds []alert.Kind
	for _, k := range g.cfg.Probes.Notify {
		if g.delivery.Has(k) && string(k) != p.Kind {
			kinds = append(kinds, k)
		}
	}
	for _, o := range g.cfg.Operators {
		if o.OnDuty && o.Phone != "" {
			for _, k := range kinds {
				targets = append(targets, alert.Target{Kind: k, ID: operatorGroup + "." + o.ID})
			}
		}
	}
	if len(targets) == 0 {
		g.log.Error().Str("probe", p.Kind+"/"+p.Target).Msg("Nobody could be told of the failing probe (no on-duty operator with a phone, or no channel)")
		return
	}
	zones := []string{p.Zone}
	if p.Zone == "" && len(g.cfg.Zones) > 0 {
		zones = []string{g.cfg.Zones[0].ID}
	}
	detail := r.Detail
	if len(detail) > 120 {
		detail = detail[:120] + "…"
	}
	now := time.Now()
	a := &alert.Alert{ID: newID(now), Principal: "system", Source: "probe", Status: alert.StatusActual, MsgType: "Alert",
		Event: "Prüfung fehlgeschlagen / Probe failed", Severity: alert.SeverityMinor, Urgency: alert.UrgencyImmediate,
		Headline: fmt.Sprintf("Tocsin: %s %s nicht erreichbar / not reachable (%s)", p.Kind, p.Target, detail),
		Zones:    zones, Channels: kinds, Sent: now.UTC(), Expires: now.Add(time.Hour).UTC()}
	a.Priority = alert.PriorityOf(a.Severity, a.Urgency)
	fp := "probe\x00" + p.Kind + "/" + p.Target + "\x00" + r.Since.Format(time.RFC3339Nano)
	if _, err := g.q.Enqueue(ctx, priority.Plan{Alert: a, Fingerprint: fp, Targets: targets}); err != nil {
		g.log.Error().Err(err).Str("probe", p.Kind+"/"+p.Target).Msg("On-duty operators not told of the failing probe")
		return
	}
	g.log.Info().Str("probe", p.Kind+"/"+p.Target).Int("notices", len(targets)).Msg("On-duty operators told of the failing probe")
}

// testSMS sends a real SMS to operator id through the SMS route, queued
// like any delivery, and waits until the provider reports it delivered.
func (g *Gateway) testSMS(ctx context.Context, id string) error {
	now := time.Now()
	a := &alert.Alert{ID: newID(now), Principal: "system", Source: "probe", Status: alert.StatusTest, MsgType: "Alert",
		Event: "Test", Severity: alert.SeverityMinor, Urgency: alert.UrgencyImmediate,
		Headline: "Tocsin: Test-SMS / test SMS — nichts zu tun / nothing to do",
		Zones:    []string{g.cfg.Zones[0].ID}, Channels: []alert.Kind{alert.KindSMS}, Sent: now.UTC(), Expires: now.Add(g.cfg.Probes.TestSMSTimeout).UTC()}
	a.Priority = alert.PriorityOf(a.Severity, a.Urgency)
	if _, err := g.q.Enqueue(ctx, priority.Plan{Alert: a, Targets: []alert.Target{{Kind: alert.KindSMS, ID: operatorGroup + "." + id}}}); err != nil {
		return fmt.Errorf("test SMS not queued: %w", err)
	}
	for {
		if st, err := g.q.Status(ctx, a.ID); err == nil {
			if c := st.Counts[alert.KindSMS]; c != nil {
				switch {
				case c.Delivered == 1:
					return nil
				case c.Failed+c.Expired+c.Cancelled > 0:
					return fmt.Errorf("test SMS to %s not delivered (failed)", id)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("test SMS to %s: no delivery report within %v", id, g.cfg.Probes.TestSMSTimeout)
		case <-time.After(time.Second):
		}
	}
}

func (g *Gateway) probeAckKey(identifier string) string {
	return g.cfg.Redis.KeyPrefix + ":probe:ack:" + identifier
}

// probeAcked records a centre's Ack of a probe message (whichever instance
// takes it; the probing one waits for it in waitProbeAck).
func (g *Gateway) probeAcked(ctx context.Context, identifier string) error {
	return g.rdb.Set(ctx, g.probeAckKey(identifier), "1", 10*time.Minute).Err()
}

// waitProbeAck waits until the Ack of the probe message identifier is in,
// or ctx ends.
func (g *Gateway) waitProbeAck(ctx context.Context, identifier string) error {
	for {
		n, err := g.rdb.Exists(ctx, g.probeAckKey(identifier)).Result()
		if err == nil && n == 1 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no CAP Ack of probe %s", identifier)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// probeResults are every probe's last outcome, by kind and target.
func (g *Gateway) probeResults(ctx context.Context) ([]ProbeResult, error) {
	out := []ProbeResult{}
	if g.rdb == nil || len(g.probes) == 0 {
		return out, nil
	}
	m, err := g.rdb.HGetAll(ctx, g.probeKey()).Result()
	if err != nil {
		return nil, err
	}
	for _, p := range g.probes {
		var r ProbeResult
		if json.Unmarshal([]byte(m[p.Kind+"/"+p.Target]), &r) == nil {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b ProbeResult) int { return strings.Compare(a.Kind+"/"+a.Target, b.Kind+"/"+b.Target) })
	return out, nil
}

// probeCollector exposes the probes' outcomes from Redis at each scrape:
// tocsin_probe_ok (1 passing, 0 failing) and the time of the last run.
type probeCollector struct{ g *Gateway }

var (
	probeOKDesc  = prometheus.NewDesc("tocsin_probe_ok", "Synthetic probe's last outcome: 1 the target answered, 0 it did not.", []string{"kind", "target"}, nil)
	probeRunDesc = prometheus.NewDesc("tocsin_probe_last_run_timestamp_seconds", "When the probe last ran.", []string{"kind", "target"}, nil)
)

func (c probeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- probeOKDesc; ch <- probeRunDesc }

func (c probeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rs, err := c.g.probeResults(ctx)
	if err != nil {
		return
	}
	for _, r := range rs {
		ok := 0.0
		if r.OK {
			ok = 1
		}
		ch <- prometheus.MustNewConstMetric(probeOKDesc, prometheus.GaugeValue, ok, r.Kind, r.Target)
		ch <- prometheus.MustNewConstMetric(probeRunDesc, prometheus.GaugeValue, float64(r.At.UnixMilli())/1000, r.Kind, r.Target)
	}
}
