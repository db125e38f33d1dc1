package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/priority"
)

// watchOpts are the flags of watch, shared by retract --follow.
type watchOpts struct {
	interval time.Duration
	json     bool
}

func watchFlags(fs *flag.FlagSet) *watchOpts {
	w := &watchOpts{}
	fs.DurationVar(&w.interval, "interval", 500*time.Millisecond, "how often to ask the gateway")
	fs.BoolVar(&w.json, "json", false, "print each changed answer as one line of JSON instead of bars")
	return w
}

func (w *watchOpts) check() error {
	if w.interval < 50*time.Millisecond {
		return fmt.Errorf("--interval %v is too short: at least 50ms", w.interval)
	}
	return nil
}

// watch draws an alert's per-channel progress until it is finished.
func watch(args []string) error {
	return runWatch(context.Background(), args, os.Stdout)
}

func runWatch(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	c := newClient(fs)
	w := watchFlags(fs)
	id, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	if id == "" {
		return errors.New("usage: tocsin watch ID [--interval 500ms] [--json]")
	}
	if err := w.check(); err != nil {
		return err
	}
	return c.watchLoop(ctx, id, w, out)
}

// alertAnswer is what watch reads of GET /v1/alerts/{id}.
type alertAnswer struct {
	ID         string                          `json:"id"`
	Status     string                          `json:"status"`
	Event      string                          `json:"event"`
	State      string                          `json:"state"`
	Expires    time.Time                       `json:"expires"`
	Retraction *retractionAnswer               `json:"retraction"`
	Channels   map[alert.Kind]*priority.Counts `json:"channels"`
}

// retractionAnswer is the retraction part of the answer: its reason, and
// whether the phones' retractions are still being queued.
type retractionAnswer struct {
	Reason   string `json:"reason"`
	Sweeping bool   `json:"sweeping"`
}

// barWidth is the number of cells in a progress bar.
const barWidth = 20

// kindsOf lists an answer's channel kinds: the known ones in alert.Kinds
// order, then any others sorted.
func kindsOf(a *alertAnswer) []alert.Kind {
	var ks, other []alert.Kind
	for _, k := range alert.Kinds {
		if a.Channels[k] != nil {
			ks = append(ks, k)
		}
	}
	for k := range a.Channels {
		if !slices.Contains(alert.Kinds, k) {
			other = append(other, k)
		}
	}
	slices.Sort(other)
	return append(ks, other...)
}

// pending are a channel's targets still to be tried, being tried, or waiting
// for another attempt.
func pending(c *priority.Counts) int { return c.Queued + c.InFlight + c.Retrying }

// reached are a channel's targets the alert was handed to or tried on: each
// is owed a retraction.
func reached(c *priority.Counts) int {
	return c.Sent + c.Delivered + c.Failed + c.Retrying + c.InFlight
}

// retractionDue is how many of a retracted channel's targets must be told.
// The gateway queues the retractions of SMS and voice in a background sweep
// after it answers, so retractions_owed can lag the targets reached; the
// larger of the two is the honest total.
func retractionDue(c *priority.Counts) int { return max(c.Owed, reached(c)) }

// retractionDone says whether everyone a retracted channel reached has been
// told: no target is left queued (the sweep cancels them) and the
// retractions handed over or given up (failed, expired) reach the total due.
func retractionDone(c *priority.Counts) bool {
	return c.Queued == 0 && c.Retracted+c.RetractFailed >= retractionDue(c)
}

// finished says whether watching can stop: the alert completed or expired,
// or it was retracted and every channel's retractions are done.
func finished(a *alertAnswer) bool {
	switch a.State {
	case "completed", "expired":
		return true
	case "retracted":
		if a.Retraction != nil && a.Retraction.Sweeping {
			return false // the phones' retractions are still being queued
		}
		for _, c := range a.Channels {
			if !retractionDone(c) {
				return false
			}
		}
		return true
	}
	return false
}

// progressLines draws an answer: a header line, then one line per channel
// with a bar of barWidth cells. For an alert in delivery a cell is '#'
// delivered, '=' sent (the provider took it, no receipt yet), 'x' failed,
// '-' cancelled or expired, '.' pending; for a retracted one '#' is a target
// told of the retraction and '.' one still to be told.
func progressLines(a *alertAnswer) []string {
	head := "alert " + a.ID
	if a.Event != "" {
		head += " " + a.Event
	}
	if a.Status != "" {
		head += " (" + a.Status + ")"
	}
	head += ": " + a.State
	if a.Retraction != nil && a.Retraction.Reason != "" {
		head += " (" + a.Retraction.Reason + ")"
	}
	if finished(a) {
		head += ", finished"
	}
	lines := []string{head}
	ks := kindsOf(a)
	if len(ks) == 0 {
		return append(lines, "  no targets planned yet")
	}
	for _, k := range ks {
		lines = append(lines, channelLine(k, a.Channels[k], a.State == "retracted"))
	}
	return lines
}

func channelLine(k alert.Kind, c *priority.Counts, retracted bool) string {
	if retracted {
		due := retractionDue(c)
		s := fmt.Sprintf("%-8s %s retracted %d/%d", k, bar(due, []cell{{'#', c.Retracted}}), c.Retracted, due)
		if c.RetractFailed > 0 {
			s += fmt.Sprintf(", %d failed", c.RetractFailed)
		}
		if c.Queued > 0 {
			s += fmt.Sprintf(", %d queued (being cancelled)", c.Queued)
		}
		if c.Cancelled > 0 {
			s += fmt.Sprintf(", %d never sent", c.Cancelled)
		}
		if retractionDone(c) {
			s += ", done"
		}
		return s
	}
	s := fmt.Sprintf("%-8s %s %d/%d delivered, %d failed",
		k, bar(c.Targets, []cell{{'#', c.Delivered}, {'=', c.Sent}, {'x', c.Failed}, {'-', c.Cancelled + c.Expired}}),
		c.Delivered, c.Targets, c.Failed)
	if c.Sent > 0 {
		s += fmt.Sprintf(", %d sent", c.Sent)
	}
	if c.Cancelled > 0 {
		s += fmt.Sprintf(", %d cancelled", c.Cancelled)
	}
	if c.Expired > 0 {
		s += fmt.Sprintf(", %d expired", c.Expired)
	}
	if p := pending(c); p > 0 {
		s += fmt.Sprintf(", %d pending", p)
	} else {
		s += ", done"
	}
	return s
}

type cell struct {
	r rune
	n int
}

// bar draws cells out of total in barWidth cells, '.' for the rest. Each run
// ends where its running sum falls, so the runs never overflow the bar.
func bar(total int, cells []cell) string {
	var b strings.Builder
	b.WriteByte('[')
	drawn, sum := 0, 0
	for _, c := range cells {
		sum += c.n
		end := barWidth
		if total > 0 && sum < total {
			end = sum * barWidth / total
		}
		if total <= 0 {
			end = 0
		}
		for ; drawn < end; drawn++ {
			b.WriteRune(c.r)
		}
	}
	for ; drawn < barWidth; drawn++ {
		b.WriteByte('.')
	}
	b.WriteByte(']')
	return b.String()
}

// drawer writes successive drawings: in place on a terminal, else only the
// lines that changed, each with the time.
type drawer struct {
	out  io.Writer
	tty  bool
	now  func() time.Time
	prev []string
}

func (d *drawer) draw(lines []string) {
	var b bytes.Buffer
	if d.tty {
		if len(d.prev) > 0 {
			fmt.Fprintf(&b, "\x1b[%dA", len(d.prev))
		}
		for _, l := range lines {
			b.WriteString("\x1b[2K" + l + "\n")
		}
		for i := len(lines); i < len(d.prev); i++ { // a shorter drawing: clear the rest, come back
			b.WriteString("\x1b[2K\n")
		}
		if n := len(d.prev) - len(lines); n > 0 {
			fmt.Fprintf(&b, "\x1b[%dA", n)
		}
	} else {
		ts := d.now().Format("15:04:05")
		for _, l := range lines {
			if !slices.Contains(d.prev, l) {
				b.WriteString(ts + " " + l + "\n")
			}
		}
	}
	d.out.Write(b.Bytes())
	d.prev = lines
}

// forget starts the next drawing afresh (something else was written).
func (d *drawer) forget() { d.prev = nil }

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// watchLoop polls GET /v1/alerts/{id} every w.interval and draws each
// changed answer until the alert is finished or ctx ends. A problem answer
// (unknown alert, no permission) ends it; a gateway that cannot be reached
// or answers 5xx is reported on stderr and asked again.
func (c *client) watchLoop(ctx context.Context, id string, w *watchOpts, out io.Writer) error {
	d := &drawer{out: out, tty: isTerminal(out), now: time.Now}
	var last []byte
	lastErr := ""
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	for {
		code, b, err := c.request("GET", "/v1/alerts/"+id, nil, nil)
		switch {
		case err == nil && code < 400:
			lastErr = ""
			var a alertAnswer
			if err := json.Unmarshal(b, &a); err != nil {
				return fmt.Errorf("the gateway's answer is not an alert: %w\n%s", err, b)
			}
			if !bytes.Equal(b, last) {
				last = b
				if w.json {
					var line bytes.Buffer
					if json.Compact(&line, b) != nil {
						line.Write(b)
					}
					fmt.Fprintln(out, line.String())
				} else {
					d.draw(progressLines(&a))
				}
			}
			if finished(&a) {
				return nil
			}
		case err == nil && code < 500 && code != http.StatusTooManyRequests:
			return answerError(code, b)
		default:
			if err == nil {
				var line bytes.Buffer
				if json.Compact(&line, b) != nil {
					line.Write(bytes.TrimSpace(b))
				}
				err = fmt.Errorf("%d %s %s", code, http.StatusText(code), line.String())
			}
			if msg := err.Error(); msg != lastErr { // once, not every interval
				lastErr = msg
				fmt.Fprintf(os.Stderr, "tocsin watch: %v (asking again every %v)\n", err, w.interval)
				d.forget()
				last = nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
