package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/internal/testenv"
)

// tocsin fake pa serves a PA controller a person can curl, and prints what it plays.
func TestFakePAStandalone(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- runFake(ctx, []string{"pa", "--listen", addr}, out) }()
	var resp *http.Response
	var err error
	for range 100 {
		resp, err = http.Post("http://"+addr+"/pa/school-pa", "application/json",
			strings.NewReader(`{"delivery_id":"x.pa.hall.a","zone":"hall","message_id":"alert","text":"Probe","repeat":1}`))
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST to the fake PA = %v %v", resp, err)
	}
	resp.Body.Close()
	waitFor(t, out, `"text":"Probe"`, 1)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestFakesListenOnLoopbackOnly(t *testing.T) {
	err := runFake(context.Background(), []string{"dispatch", "--listen", "0.0.0.0:0", "--centre", "ils=key"}, &syncBuffer{})
	if err == nil || !strings.Contains(err.Error(), "loopback only") {
		t.Fatalf("fake on 0.0.0.0 = %v, want refused", err)
	}
}
