package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	api "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/twilioapi"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// ingestBody is a realistic alert with a unique event per request (so the
// fingerprint does not make it a duplicate).
func ingestBody(i int64) []byte {
	return fmt.Appendf(nil, `{"status":"actual","event":"Fire %d","severity":"Severe","urgency":"Immediate",`+
		`"headline":"Brand im Rathaus","description":"Feuer im zweiten Obergeschoss","zones":["school"]}`, i)
}

func hammer(b *testing.B, url, key string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var n atomic.Int64
	b.SetParallelism(8) // 16 concurrent senders on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", url+"/v1/alerts", bytes.NewReader(ingestBody(n.Add(1))))
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 202 {
				b.Errorf("POST = %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
}

// BenchmarkIngest: authorised, validated, deduplicated, durably queued alerts
// over HTTP, next to a bare net/http handler that decodes the same JSON and
// answers 202 (the ceiling), at the same concurrency in the same run.
func BenchmarkIngest(b *testing.B) {
	for _, m := range []struct {
		name string
		fast bool
	}{{"aof-always", false}, {"no-persistence", true}} {
		b.Run(m.name+"/tocsin", func(b *testing.B) {
			s := newStack(b, stackOptions{noGateway: true, redis: testenv.Redis(b, m.fast), broker: &testenv.Server{}})
			s.startGatewayWith(adapters.Func(func(context.Context, alert.Delivery) error { return nil }))
			s.cancelWorkers()
			hammer(b, s.url, dispatchKey)
		})
	}
	b.Run("bare-net-http", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var v map[string]any
			if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
				w.WriteHeader(400)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(202)
			w.Write([]byte(`{"id":"x","priority":7,"duplicate":false,"state":"queued","targets":3}`))
		}))
		defer srv.Close()
		hammer(b, srv.URL, dispatchKey)
	})
}

// BenchmarkPickup measures enqueue → adapter after an idle period: one alert
// at a time, 20ms apart, timed from just before the POST to the moment the
// adapter is called. The ceiling beside it is a bare Redis LPUSH → BLPOP
// wake-up between two clients of the same Redis.
func BenchmarkPickup(b *testing.B) {
	var p50, p99 float64
	b.Run("tocsin", func(b *testing.B) {
		called := make(chan time.Time, 16)
		s := newStack(b, stackOptions{noGateway: true, redis: testenv.Redis(b, true), broker: &testenv.Server{}, sirens: 1})
		s.startGatewayWith(adapters.Func(func(ctx context.Context, d alert.Delivery) error {
			called <- time.Now()
			return nil
		}))
		lat := make([]time.Duration, 0, b.N)
		for i := range b.N {
			time.Sleep(20 * time.Millisecond)
			start := time.Now()
			req, _ := http.NewRequest("POST", s.url+"/v1/alerts", bytes.NewReader(ingestBody(int64(i))))
			req.Header.Set("Authorization", "Bearer "+dispatchKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 202 {
				b.Fatalf("POST = %v %v", resp, err)
			}
			resp.Body.Close()
			lat = append(lat, (<-called).Sub(start))
		}
		p50, p99 = percentiles(lat)
		b.ReportMetric(p50, "p50-ms")
		b.ReportMetric(p99, "p99-ms")
	})
	b.Run("redis-lpush-blpop", func(b *testing.B) {
		srv := testenv.Redis(b, true)
		a := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer a.Close()
		defer c.Close()
		ctx := context.Background()
		got := make(chan time.Time, 1)
		go func() {
			for {
				if err := c.BLPop(ctx, 0, "wake").Err(); err != nil {
					return
				}
				got <- time.Now()
			}
		}()
		lat := make([]time.Duration, 0, b.N)
		for range b.N {
			time.Sleep(20 * time.Millisecond)
			start := time.Now()
			a.LPush(ctx, "wake", 1)
			lat = append(lat, (<-got).Sub(start))
		}
		p50, p99 := percentiles(lat)
		b.ReportMetric(p50, "p50-ms")
		b.ReportMetric(p99, "p99-ms")
	})
}

func percentiles(d []time.Duration) (p50, p99 float64) {
	slices.Sort(d)
	at := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))].Microseconds()) / 1000 }
	return at(0.5), at(0.99)
}

// BenchmarkSMSFanout: one alert to 2,000 phones through the whole path (plan,
// claim, pace at 10,000/s — above what the path reaches, so pacing never
// binds — fence check, twilio-go, the fake Twilio), next to a bare twilio-go
// loop against the same kind of fake with as many concurrent senders as the
// gateway has deliveries in flight (8 workers × 50 targets per job).
func BenchmarkSMSFanout(b *testing.B) {
	const n, inFlight = 2000, 8 * 50
	for _, m := range []struct {
		name string
		fast bool
	}{{"aof-always", false}, {"no-persistence", true}} {
		b.Run(m.name+"/tocsin", func(b *testing.B) {
			tw := fakeTwilio(b, fake.TwilioOptions{NoCallbacks: true})
			s := newStack(b, stackOptions{phones: n, twilio: tw, rate: 10000, redis: testenv.Redis(b, m.fast)})
			b.ResetTimer()
			for i := range b.N {
				r := s.post(fmt.Sprintf(`{"status":"actual","event":"Fire %d","severity":"Severe","urgency":"Immediate","zones":["school"],"channels":["sms"]}`, i))
				if r.Code != 202 {
					b.Fatalf("POST = %d %s", r.Code, r.Raw)
				}
				for tw.Requests() < (i+1)*n {
					time.Sleep(time.Millisecond)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "sms/s")
		})
	}
	b.Run("bare-twilio-go", func(b *testing.B) {
		tw := fakeTwilio(b, fake.TwilioOptions{NoCallbacks: true})
		c, err := twilioapi.New(twilioapi.Account{SID: mainSID, AuthToken: mainToken, BaseURL: tw.URL})
		if err != nil {
			b.Fatal(err)
		}
		jobs := make(chan int)
		var wg sync.WaitGroup
		for range inFlight {
			wg.Add(1)
			go func() { // exits when jobs is closed
				defer wg.Done()
				for i := range jobs {
					p := (&api.CreateMessageParams{}).SetTo(phone(i % n)).SetFrom("+4930100000").SetBody("WARNUNG: Brand im Rathaus.").
						SetValidityPeriod(3600).SetStatusCallback("http://127.0.0.1:1/v1/callbacks/twilio/x")
					if _, err := c.Api.CreateMessage(p); err != nil {
						b.Error(err)
					}
				}
			}()
		}
		b.ResetTimer()
		for i := range n * b.N {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "sms/s")
	})
}

// BenchmarkSMSPacing: 500 SMS from one sender paced at 100/s. The figure
// beside Tocsin's achieved rate is the configured rate (the ceiling pacing
// must reach and never pass); the fake Twilio counts every send that came
// sooner than 1/rate after the one before (a sliding one-second window).
func BenchmarkSMSPacing(b *testing.B) {
	const n, rate = 500, 100.0
	tw := fakeTwilio(b, fake.TwilioOptions{NoCallbacks: true, Rates: map[string]float64{"+4930100000": rate}})
	s := newStack(b, stackOptions{phones: n, twilio: tw, rate: rate})
	b.ResetTimer()
	for i := range b.N {
		s.post(fmt.Sprintf(`{"status":"actual","event":"Gas %d","severity":"Severe","urgency":"Immediate","zones":["school"],"channels":["sms"]}`, i))
		for tw.Requests() < (i+1)*n {
			time.Sleep(time.Millisecond)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "sms/s")
	b.ReportMetric(rate, "configured/s")
	b.ReportMetric(float64(tw.Violations()["+4930100000"]), "violations")
}
