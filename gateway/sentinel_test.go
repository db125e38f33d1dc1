package gateway_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/internal/testenv"
)

// A gateway on Sentinel (redis.master_name, wait_replicas: 1) keeps every
// alert it answered through a kill -9 of the master: a sender retrying a
// 503 with the same Idempotency-Key gets one alert, the Sentinel promotes a
// replica, the gateway follows it, and every alert answered 202 — before or
// after — is there and sounds.
func TestSentinelFailoverGateway(t *testing.T) {
	sen := testenv.RedisSentinel(t)
	s := newStack(t, stackOptions{sentinel: sen})
	body := `{"status":"actual","event":"Gas %d","severity":"Extreme","urgency":"Immediate","zones":["school"],"channels":["siren"]}`
	var ids []string
	post := func(i int) {
		key := fmt.Sprintf("sentinel-%d", i)
		deadline := time.Now().Add(30 * time.Second)
		for {
			r := s.post(fmt.Sprintf(body, i), "Idempotency-Key", key)
			if r.Code == 202 || r.Code == 200 {
				ids = append(ids, r.Body["id"].(string))
				return
			}
			if r.Code != 503 || time.Now().After(deadline) {
				t.Fatalf("alert %d = %d %s", i, r.Code, r.Raw)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for i := range 5 {
		post(i)
	}
	sen.Master.Kill()
	for i := 5; i < 25; i++ {
		post(i)
	}
	seen := map[string]bool{}
	for i, id := range ids {
		if seen[id] {
			t.Errorf("alert %d answered with %s, which another request already got", i, id)
		}
		seen[id] = true
		eventually(t, 15*time.Second, fmt.Sprintf("alert %d (%s) sounded", i, id), func() bool {
			c := s.sirenCounts(id)
			if c["delivered"] != float64(3) {
				t.Logf("alert %d: %v", i, c)
			}
			return c["delivered"] == float64(3)
		})
	}
}
