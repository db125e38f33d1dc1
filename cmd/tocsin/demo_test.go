package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tocsin-alert/tocsin/gateway"
	"github.com/tocsin-alert/tocsin/internal/testenv"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, out *syncBuffer, what string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Count(out.String(), what) >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("demo output lacks %d× %q:\n%s", n, what, out.String())
}

// The demo as `make demo` runs it (in-process Redis stand-in and broker): an
// alert sounds the school's three sirens and its retraction gives them all_clear.
func TestDemoWalkthrough(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- runDemo(ctx, []string{"--listen", addr, "--log-level", "error"}, out) }()
	waitFor(t, out, "centre receives appears below", 1)

	post := func(path, key, body string) map[string]any {
		req, _ := http.NewRequest("POST", "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		if resp.StatusCode != 202 {
			t.Fatalf("POST %s = %d %v", path, resp.StatusCode, m)
		}
		return m
	}
	a := post("/v1/alerts", demoDispatchKey, `{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","headline":"Amokalarm","zones":["soest-school"]}`)
	waitFor(t, out, "← alarm", 3)
	waitFor(t, out, "← WARNUNG: Amokalarm", 4) // 2 SMS + 1 call in German (calls are paced at 2/s), the halls' PA
	waitFor(t, out, "← WARNING: Amokalarm", 3) // the English speaker's SMS and call, the gym's PA
	waitFor(t, out, "school-halls via school-pa   ", 1)
	waitFor(t, out, "school-gym via gym-pa", 1)
	waitFor(t, out, "← CAP Alert: Amokalarm", 1)
	time.Sleep(200 * time.Millisecond) // let the acks land
	post("/v1/alerts/"+a["id"].(string)+"/retract", demoOperatorKey, `{"reason":"false_alarm"}`)
	waitFor(t, out, "← all_clear", 3)
	waitFor(t, out, "← WARNUNG: Amokalarm", 4)      // 2 SMS + 1 call in German, the halls' PA
	waitFor(t, out, "← ENTWARNUNG: Die Warnung", 4) // and their false-alarm notices
	waitFor(t, out, "← ALL CLEAR: The warning", 3)  // the English speaker's SMS and call, the gym's PA
	waitFor(t, out, "← CAP Cancel", 1)
	waitFor(t, out, "← CAP Update: ENTWARNUNG", 1)
	if strings.Contains(out.String(), "townhall") {
		t.Fatalf("a town hall siren was reached:\n%s", out.String())
	}

	// Step 4 of the walkthrough: the amok button, signed with its key, on the
	// broker the demo printed.
	m := regexp.MustCompile(`mosquitto_pub -h (\S+) -p (\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the walkthrough lacks the mosquitto_pub line:\n%s", out.String())
	}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + m[1] + ":" + m[2]).SetClientID("demo-test-button"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to the demo's broker: %v", tok.Error())
	}
	defer c.Disconnect(100)
	tr := gateway.Trigger{Trigger: "amok-button", Zone: "soest-school", EventID: fmt.Sprintf("btn-%d", time.Now().UnixNano()), Timestamp: time.Now().UTC().Format(time.RFC3339)}
	tr.HMAC = gateway.TriggerMAC([]byte(demoButtonKey), tr)
	b, _ := json.Marshal(tr)
	c.Publish("tocsin/v1/trigger/school-amok-button", 1, false, b).WaitTimeout(5 * time.Second)
	waitFor(t, out, "← WARNUNG: Amokalarm (Taster)", 1) // the halls' PA
	waitFor(t, out, "← alarm", 6)                       // the three sirens once more
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not stop")
	}
}
