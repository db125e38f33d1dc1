package main

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
)

// The client commands print tables by default and the API's JSON with
// --json; an unknown filter value is refused before anything is asked.
func TestClientTables(t *testing.T) {
	addr, _ := startDemo(t)
	url := "http://" + addr
	var b bytes.Buffer
	if err := runSend(url, demoDispatchKey, &b); err != nil {
		t.Fatal(err)
	}
	id := strings.Fields(b.String())[0]

	b.Reset()
	if err := runStatus([]string{"--url", url, "--key", demoDispatchKey}, &b); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(b.String()), "\n"); !strings.HasPrefix(lines[0], "ID") || !strings.Contains(b.String(), id) || !strings.Contains(b.String(), "Amok") {
		t.Errorf("status table:\n%s", b.String())
	}
	b.Reset()
	if err := runStatus([]string{id, "--url", url, "--key", demoDispatchKey}, &b); err != nil || !strings.Contains(b.String(), "siren") || !strings.Contains(b.String(), "delivered") {
		t.Errorf("status ID: %v\n%s", err, b.String())
	}
	b.Reset()
	if err := runStatus([]string{id, "--json", "--url", url, "--key", demoDispatchKey}, &b); err != nil || !strings.HasPrefix(b.String(), "{") || !strings.Contains(b.String(), `"channels"`) {
		t.Errorf("status ID --json: %v\n%s", err, b.String())
	}
	b.Reset()
	if err := runSources([]string{"--url", url, "--key", demoOperatorKey}, &b); err != nil || !strings.HasPrefix(b.String(), "SOURCE") || !strings.Contains(b.String(), "school-amok-button") {
		t.Errorf("sources: %v\n%s", err, b.String())
	}
	b.Reset()
	if err := runTriggers([]string{"--url", url, "--key", demoOperatorKey}, &b); err != nil || !strings.HasPrefix(b.String(), "AT") {
		t.Errorf("triggers: %v\n%s", err, b.String())
	}
	// An unknown value is refused here, naming the choices, without a request.
	if err := runTriggers([]string{"--url", "http://" + closedAddr(t), "--key", "x", "--status", "quarantine"}, &b); err == nil || !strings.Contains(err.Error(), "quarantined") {
		t.Errorf("triggers --status quarantine: %v", err)
	}
}

// runSend posts one live amok alert through the send command's client and
// writes its id first.
func runSend(url, key string, w *bytes.Buffer) error {
	c := &client{url: url, key: key}
	code, b, err := c.request("POST", "/v1/alerts", map[string]any{"status": "actual", "event": "Amok", "severity": "Extreme",
		"urgency": "Immediate", "headline": "Amokalarm", "zones": []string{"soest-school"}}, nil)
	if err != nil {
		return err
	}
	if code != 202 {
		return answerError(code, b)
	}
	i := strings.Index(string(b), `"id":"`)
	id := string(b)[i+6:]
	fmt.Fprintln(w, id[:strings.Index(id, `"`)])
	return nil
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}
