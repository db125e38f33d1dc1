package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/priority"
)

// send never guesses the status: without --status (or with another word) it
// fails naming the flag and the choices, and asks the gateway nothing.
func TestSendRequiresStatus(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	base := []string{"--url", srv.URL, "--key", "k", "--event", "Fire", "--zones", "z"}
	for _, extra := range [][]string{nil, {"--status", "live"}, {"--status", ""}} {
		err := send(append(append([]string{}, base...), extra...))
		if err == nil {
			t.Fatalf("send %v = nil, want an error", extra)
		}
		for _, w := range []string{"--status", "actual", "exercise", "test"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("send %v = %q, lacks %q", extra, err, w)
			}
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the gateway was asked %d times", n)
	}
}

func TestBar(t *testing.T) {
	for _, c := range []struct {
		total int
		cells []cell
		want  string
	}{
		{0, nil, "[....................]"},
		{10, []cell{{'#', 10}}, "[####################]"},
		{1000, []cell{{'#', 812}, {'x', 3}}, "[################....]"},
		{4, []cell{{'#', 1}, {'=', 1}, {'x', 1}, {'-', 1}}, "[#####=====xxxxx-----]"},
		{3, []cell{{'#', 1}, {'x', 2}}, "[######xxxxxxxxxxxxxx]"},
		{5, []cell{{'#', 9}}, "[####################]"}, // more than the total never overflows
	} {
		if got := bar(c.total, c.cells); got != c.want {
			t.Errorf("bar(%d, %v) = %s, want %s", c.total, c.cells, got, c.want)
		}
	}
}

func answer(state string, ch map[alert.Kind]*priority.Counts) *alertAnswer {
	a := &alertAnswer{ID: "A1", Event: "Fire", Status: "actual", State: state, Channels: ch}
	if state == "retracted" {
		a.Retraction = &retractionAnswer{Reason: "false_alarm"}
	}
	return a
}

func TestProgressLines(t *testing.T) {
	for _, c := range []struct {
		name string
		a    *alertAnswer
		want []string
		done bool
	}{
		{"queued, nothing planned", answer("queued", nil), []string{
			"alert A1 Fire (actual): queued",
			"  no targets planned yet",
		}, false},
		{"delivering", answer("delivering", map[alert.Kind]*priority.Counts{
			alert.KindSMS:      {Targets: 1000, Delivered: 812, Failed: 3, Queued: 100, InFlight: 50, Retrying: 35},
			alert.KindSiren:    {Targets: 3, Delivered: 3},
			alert.KindDispatch: {Targets: 1, Sent: 1},
		}), []string{
			"alert A1 Fire (actual): delivering",
			"siren    [####################] 3/3 delivered, 0 failed, done",
			"sms      [################....] 812/1000 delivered, 3 failed, 185 pending",
			"dispatch [====================] 0/1 delivered, 0 failed, 1 sent, done",
		}, false},
		{"completed", answer("completed", map[alert.Kind]*priority.Counts{
			alert.KindVoice: {Targets: 4, Delivered: 2, Failed: 1, Cancelled: 1},
		}), []string{
			"alert A1 Fire (actual): completed, finished",
			"voice    [##########xxxxx-----] 2/4 delivered, 1 failed, 1 cancelled, done",
		}, true},
		{"expired with targets open", answer("expired", map[alert.Kind]*priority.Counts{
			alert.KindPA: {Targets: 2, Expired: 1, Queued: 1},
		}), []string{
			"alert A1 Fire (actual): expired, finished",
			"pa       [----------..........] 0/2 delivered, 0 failed, 1 expired, 1 pending",
		}, true},
		{"retracted, sweep not yet done", answer("retracted", map[alert.Kind]*priority.Counts{
			// SMS: 6 reached, 4 still queued; the sweep has queued no
			// retraction yet, so retractions_owed is 0 and means nothing.
			alert.KindSMS:   {Targets: 10, Delivered: 5, Failed: 1, Queued: 4},
			alert.KindSiren: {Targets: 2, Delivered: 2, Owed: 2, Retracted: 1},
		}), []string{
			"alert A1 Fire (actual): retracted (false_alarm)",
			"siren    [##########..........] retracted 1/2",
			"sms      [....................] retracted 0/6, 4 queued (being cancelled)",
		}, false},
		{"retracted, sweep done, some told", answer("retracted", map[alert.Kind]*priority.Counts{
			alert.KindSMS:   {Targets: 10, Delivered: 5, Failed: 1, Cancelled: 4, Owed: 6, Retracted: 3},
			alert.KindSiren: {Targets: 2, Delivered: 2, Owed: 2, Retracted: 2},
		}), []string{
			"alert A1 Fire (actual): retracted (false_alarm)",
			"siren    [####################] retracted 2/2, done",
			"sms      [##########..........] retracted 3/6, 4 never sent",
		}, false},
		{"retracted, one retraction failed: nothing more to wait for", answer("retracted", map[alert.Kind]*priority.Counts{
			alert.KindSMS: {Targets: 6, Delivered: 6, Owed: 6, Retracted: 5, RetractFailed: 1},
		}), []string{
			"alert A1 Fire (actual): retracted (false_alarm), finished",
			"sms      [################....] retracted 5/6, 1 failed, done",
		}, true},
		{"retracted, an attempt in flight", answer("retracted", map[alert.Kind]*priority.Counts{
			alert.KindVoice: {Targets: 2, Delivered: 1, InFlight: 1, Owed: 2, Retracted: 1},
		}), []string{
			"alert A1 Fire (actual): retracted (false_alarm)",
			"voice    [##########..........] retracted 1/2",
		}, false},
		{"retracted, everyone told", answer("retracted", map[alert.Kind]*priority.Counts{
			alert.KindSMS:   {Targets: 10, Delivered: 5, Failed: 1, Cancelled: 4, Owed: 6, Retracted: 6},
			alert.KindSiren: {Targets: 2, Delivered: 2, Owed: 2, Retracted: 2},
			alert.KindPA:    {Targets: 1, Cancelled: 1},
		}), []string{
			"alert A1 Fire (actual): retracted (false_alarm), finished",
			"siren    [####################] retracted 2/2, done",
			"pa       [....................] retracted 0/0, 1 never sent, done",
			"sms      [####################] retracted 6/6, 4 never sent, done",
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := progressLines(c.a)
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("progressLines =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			if f := finished(c.a); f != c.done {
				t.Errorf("finished = %v, want %v", f, c.done)
			}
		})
	}
}

// On a terminal each drawing goes up over the last one and clears each line.
func TestDrawerInPlace(t *testing.T) {
	var b bytes.Buffer
	d := &drawer{out: &b, tty: true, now: time.Now}
	d.draw([]string{"a", "b"})
	d.draw([]string{"a", "c", "d"})
	d.draw([]string{"e"})
	want := "\x1b[2Ka\n\x1b[2Kb\n" +
		"\x1b[2A\x1b[2Ka\n\x1b[2Kc\n\x1b[2Kd\n" +
		"\x1b[3A\x1b[2Ke\n\x1b[2K\n\x1b[2K\n\x1b[2A"
	if b.String() != want {
		t.Fatalf("drawn %q\nwant  %q", b.String(), want)
	}
}

// The polling loop against a gateway that answers a sequence: one line per
// change when stdout is not a terminal, a 5xx is asked again, and it ends
// when every channel's retractions are done.
func TestWatchLoopSequence(t *testing.T) {
	steps := []*alertAnswer{
		answer("delivering", map[alert.Kind]*priority.Counts{
			alert.KindSiren: {Targets: 2, InFlight: 2},
			alert.KindSMS:   {Targets: 4, Queued: 4},
		}),
		answer("delivering", map[alert.Kind]*priority.Counts{ // unchanged: nothing printed
			alert.KindSiren: {Targets: 2, InFlight: 2},
			alert.KindSMS:   {Targets: 4, Queued: 4},
		}),
		nil, // a 503
		answer("delivering", map[alert.Kind]*priority.Counts{
			alert.KindSiren: {Targets: 2, Delivered: 2},
			alert.KindSMS:   {Targets: 4, Queued: 2, Delivered: 2},
		}),
		answer("retracted", map[alert.Kind]*priority.Counts{
			alert.KindSiren: {Targets: 2, Delivered: 2, Owed: 2},
			alert.KindSMS:   {Targets: 4, Queued: 2, Delivered: 2},
		}),
		answer("retracted", map[alert.Kind]*priority.Counts{
			alert.KindSiren: {Targets: 2, Delivered: 2, Owed: 2, Retracted: 2},
			alert.KindSMS:   {Targets: 4, Cancelled: 2, Delivered: 2, Owed: 2, Retracted: 1},
		}),
		answer("retracted", map[alert.Kind]*priority.Counts{
			alert.KindSiren: {Targets: 2, Delivered: 2, Owed: 2, Retracted: 2},
			alert.KindSMS:   {Targets: 4, Cancelled: 2, Delivered: 2, Owed: 2, Retracted: 2},
		}),
	}
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/alerts/A1" || r.Header.Get("Authorization") != "Bearer k" {
			t.Errorf("asked %s %s", r.URL.Path, r.Header.Get("Authorization"))
		}
		i := min(int(n.Add(1))-1, len(steps)-1)
		if steps[i] == nil {
			http.Error(w, `{"title":"Service unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(steps[i])
	}))
	defer srv.Close()

	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := runWatch(ctx, []string{"A1", "--url", srv.URL, "--key", "k", "--interval", "50ms"}, &out)
	if err != nil {
		t.Fatalf("watch = %v\n%s", err, out.String())
	}
	if got := int(n.Load()); got != len(steps) {
		t.Errorf("asked %d times, want %d (it stops when finished)", got, len(steps))
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		lines = append(lines, l[len("15:04:05 "):])
	}
	want := []string{
		"alert A1 Fire (actual): delivering",
		"siren    [....................] 0/2 delivered, 0 failed, 2 pending",
		"sms      [....................] 0/4 delivered, 0 failed, 4 pending",
		// after the 503 the drawing starts afresh
		"alert A1 Fire (actual): delivering",
		"siren    [####################] 2/2 delivered, 0 failed, done",
		"sms      [##########..........] 2/4 delivered, 0 failed, 2 pending",
		"alert A1 Fire (actual): retracted (false_alarm)",
		"siren    [....................] retracted 0/2",
		"sms      [....................] retracted 0/2, 2 queued (being cancelled)",
		"siren    [####################] retracted 2/2, done",
		"sms      [##########..........] retracted 1/2, 2 never sent",
		"alert A1 Fire (actual): retracted (false_alarm), finished",
		"sms      [####################] retracted 2/2, 2 never sent, done",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("watch printed\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// A problem answer such as 404 ends watch with the problem.
func TestWatchUnknownAlert(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"title":"Not found","detail":"no alert \"nope\""}`))
	}))
	defer srv.Close()
	err := runWatch(context.Background(), []string{"nope", "--url", srv.URL, "--key", "k"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), `no alert \"nope\"`) {
		t.Fatalf("watch = %v, want the 404", err)
	}
}

// End to end against the demo's gateway: watch an alert until it completes,
// then retract it with --follow until every channel shows retracted n/n.
func TestWatchDemo(t *testing.T) {
	addr, _ := startDemo(t)

	url := "http://" + addr
	c := &client{url: url, key: demoDispatchKey}
	code, b, err := c.request("POST", "/v1/alerts", map[string]any{"status": "actual", "event": "Amok", "severity": "Extreme",
		"urgency": "Immediate", "headline": "Amokalarm", "zones": []string{"soest-school"}}, nil)
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("POST /v1/alerts = %d %v\n%s", code, err, b)
	}
	var a struct{ ID string }
	json.Unmarshal(b, &a)

	wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer wcancel()
	var w bytes.Buffer
	if err := runWatch(wctx, []string{a.ID, "--url", url, "--key", demoDispatchKey, "--interval", "100ms"}, &w); err != nil {
		t.Fatalf("watch = %v\n%s", err, w.String())
	}
	t.Logf("watch:\n%s", w.String())
	for _, s := range []string{": completed, finished", "siren    [####################] 3/3 delivered, 0 failed, done", "pa ", "sms ", "voice ", "dispatch "} {
		if !strings.Contains(w.String(), s) {
			t.Errorf("watch output lacks %q:\n%s", s, w.String())
		}
	}

	var r bytes.Buffer
	err = runRetract(wctx, []string{a.ID, "--url", url, "--key", demoOperatorKey, "--reason", "false_alarm", "--follow", "--interval", "100ms"}, &r)
	if err != nil {
		t.Fatalf("retract --follow = %v\n%s", err, r.String())
	}
	t.Logf("retract --follow:\n%s", r.String())
	for _, s := range []string{"retraction of " + a.ID + " accepted (false_alarm)", "retracted (false_alarm), finished", "siren    [####################] retracted 3/3, done"} {
		if !strings.Contains(r.String(), s) {
			t.Errorf("retract --follow output lacks %q:\n%s", s, r.String())
		}
	}
	// The last drawing has every channel told.
	last := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(r.String()), "\n") {
		if f := strings.Fields(l); len(f) > 2 && strings.HasPrefix(f[2], "[") {
			last[f[1]] = l
		}
	}
	for _, k := range []string{"siren", "pa", "sms", "voice", "dispatch"} {
		if !strings.HasSuffix(last[k], ", done") {
			t.Errorf("%s's last line is %q, want retracted n/n, done", k, last[k])
		}
	}
}

// With --json each changed answer is one line of JSON, as the gateway sent it.
func TestWatchJSON(t *testing.T) {
	steps := []*alertAnswer{
		answer("delivering", map[alert.Kind]*priority.Counts{alert.KindSiren: {Targets: 1, InFlight: 1}}),
		answer("delivering", map[alert.Kind]*priority.Counts{alert.KindSiren: {Targets: 1, InFlight: 1}}),
		answer("completed", map[alert.Kind]*priority.Counts{alert.KindSiren: {Targets: 1, Delivered: 1}}),
	}
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := json.MarshalIndent(steps[min(int(n.Add(1))-1, len(steps)-1)], "", "  ")
		w.Write(b)
	}))
	defer srv.Close()
	var out bytes.Buffer
	if err := runWatch(context.Background(), []string{"A1", "--json", "--url", srv.URL, "--key", "k", "--interval", "50ms"}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("printed %d lines, want 2:\n%s", len(lines), out.String())
	}
	for i, state := range []string{"delivering", "completed"} {
		var a alertAnswer
		if err := json.Unmarshal([]byte(lines[i]), &a); err != nil || a.State != state {
			t.Errorf("line %d = %s (%v), want the %s answer", i, lines[i], err, state)
		}
	}
}
