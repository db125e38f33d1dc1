package gateway

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sony/gobreaker/v2"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/priority"
)

// metrics are the gateway's Prometheus metrics, on a registry of its own so
// several gateways can live in one process (tests, the demo).
type metrics struct {
	reg        *prometheus.Registry
	accepted   prometheus.Counter
	duplicates prometheus.Counter
	rejected   *prometheus.CounterVec
	retracted  prometheus.Counter
	deliveries *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	breakers   *prometheus.GaugeVec

	// open are the breakers not closed now, by key, with their state.
	openMu sync.Mutex
	open   map[string]string
}

func newMetrics(q *priority.Queue) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tocsin_alerts_accepted_total", Help: "Alerts accepted and durably queued.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tocsin_alerts_duplicate_total", Help: "Alerts answered as duplicates of an earlier one.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tocsin_alerts_rejected_total", Help: "Alerts rejected, by reason.",
		}, []string{"reason"}),
		retracted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tocsin_alerts_retracted_total", Help: "Alerts retracted.",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tocsin_deliveries_total", Help: "Deliveries finished, by channel kind, message and outcome.",
		}, []string{"kind", "message", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tocsin_delivery_latency_seconds", Help: "From acceptance (or retraction) to the target's confirmation.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"kind", "message"}),
		breakers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tocsin_breaker_state", Help: "Circuit breaker state per target: 0 closed, 1 half-open, 2 open.",
		}, []string{"target"}),
	}
	depth := prometheus.NewGaugeFunc // one gauge per lane, read on scrape
	m.reg.MustRegister(m.accepted, m.duplicates, m.rejected, m.retracted, m.deliveries, m.latency, m.breakers,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, k := range alert.Kinds {
		m.reg.MustRegister(depth(prometheus.GaugeOpts{
			Name: "tocsin_queue_depth", Help: "Jobs waiting on a channel kind's lane.", ConstLabels: prometheus.Labels{"kind": string(k)},
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			n, err := q.Depth(ctx, k)
			if err != nil {
				return -1
			}
			return float64(n)
		}))
	}
	return m
}

func (m *metrics) breakerChanged(target string, _, to gobreaker.State) {
	v := map[gobreaker.State]float64{gobreaker.StateClosed: 0, gobreaker.StateHalfOpen: 1, gobreaker.StateOpen: 2}[to]
	m.breakers.WithLabelValues(target).Set(v)
	m.openMu.Lock()
	defer m.openMu.Unlock()
	if m.open == nil {
		m.open = map[string]string{}
	}
	if to == gobreaker.StateClosed {
		delete(m.open, target)
	} else {
		m.open[target] = to.String()
	}
}

// openBreakers are the breakers not closed now.
func (m *metrics) openBreakers() map[string]string {
	m.openMu.Lock()
	defer m.openMu.Unlock()
	return maps.Clone(m.open)
}
