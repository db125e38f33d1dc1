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
)

type client struct{ url, key string }

func newClient(fs *flag.FlagSet) *client {
	c := &client{url: os.Getenv("TOCSIN_URL"), key: os.Getenv("TOCSIN_KEY")}
	if c.url == "" {
		c.url = "http://127.0.0.1:8080"
	}
	fs.StringVar(&c.url, "url", c.url, "gateway URL (TOCSIN_URL)")
	fs.StringVar(&c.key, "key", c.key, "API key (TOCSIN_KEY; prefer the variable: flags show in ps)")
	return c
}

// request sends a request and returns the answer's status code and body.
func (c *client) request(method, path string, body any, header map[string]string) (int, []byte, error) {
	if c.key == "" {
		return 0, nil, errors.New("no API key: set TOCSIN_KEY")
	}
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimRight(c.url, "/")+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s: reading the answer: %w", resp.Status, err)
	}
	return resp.StatusCode, b, nil
}

// answerError is the error for a problem answer: the status and the problem, pretty.
func answerError(code int, b []byte) error {
	return fmt.Errorf("%d %s\n%s", code, http.StatusText(code), pretty(b))
}

func pretty(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		return string(b)
	}
	return out.String()
}

// do sends a request and prints the answer, pretty; a problem answer is an error.
func (c *client) do(method, path string, body any, header map[string]string) error {
	code, b, err := c.request(method, path, body, header)
	if err != nil {
		return err
	}
	if code >= 400 {
		return answerError(code, b)
	}
	fmt.Println(pretty(b))
	return nil
}

// statuses are the alert statuses send accepts; it has no default, so that
// nobody sends a live alert by leaving the flag out.
var statuses = []string{"actual", "exercise", "test"}

func send(args []string) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	c := newClient(fs)
	body := map[string]any{}
	status := fs.String("status", "", "actual, exercise or test (required: there is no default)")
	event := fs.String("event", "", "what happened (required)")
	severity := fs.String("severity", "Extreme", "Extreme, Severe, Moderate, Minor, Unknown")
	urgency := fs.String("urgency", "Immediate", "Immediate, Expected, Future, Past, Unknown")
	headline := fs.String("headline", "", "headline")
	zones := fs.String("zones", "", "comma-separated zone ids (required)")
	expires := fs.Duration("expires", 0, "expire after this long (default: the gateway's default)")
	idem := fs.String("idempotency-key", "", "Idempotency-Key header")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *status == "":
		return errors.New("--status is required: actual, exercise or test (there is no default: say whether this alert is live)")
	case !slices.Contains(statuses, *status):
		return fmt.Errorf("--status %q is not one of actual, exercise, test", *status)
	}
	body["status"], body["event"], body["severity"], body["urgency"] = *status, *event, *severity, *urgency
	if *headline != "" {
		body["headline"] = *headline
	}
	if *zones != "" {
		body["zones"] = strings.Split(*zones, ",")
	}
	if *expires > 0 {
		body["expires"] = time.Now().Add(*expires).UTC().Format(time.RFC3339)
	}
	h := map[string]string{}
	if *idem != "" {
		h["Idempotency-Key"] = *idem
	}
	return c.do("POST", "/v1/alerts", body, h)
}

func retract(args []string) error {
	return runRetract(context.Background(), args, os.Stdout)
}

// runRetract retracts an alert and, with --follow, watches its retractions
// reach everyone the alert reached.
func runRetract(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("retract", flag.ContinueOnError)
	c := newClient(fs)
	reason := fs.String("reason", "false_alarm", "false_alarm, all_clear or superseded")
	note := fs.String("note", "", "free text for the record")
	follow := fs.Bool("follow", false, "then watch the retractions until every channel shows retracted n/n")
	w := watchFlags(fs)
	id, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	if id == "" {
		return errors.New("usage: tocsin retract ID [--reason R] [--note N] [--follow]")
	}
	if !*follow {
		return c.do("POST", "/v1/alerts/"+id+"/retract", map[string]string{"reason": *reason, "note": *note}, nil)
	}
	if err := w.check(); err != nil {
		return err
	}
	code, b, err := c.request("POST", "/v1/alerts/"+id+"/retract", map[string]string{"reason": *reason, "note": *note}, nil)
	if err != nil {
		return err
	}
	if code >= 400 {
		err := answerError(code, b)
		if code == http.StatusConflict {
			err = fmt.Errorf("%w\n(to follow the earlier retraction: tocsin watch %s)", err, id)
		}
		return err
	}
	if !w.json {
		fmt.Fprintf(out, "retraction of %s accepted (%s); following it until every channel shows retracted n/n\n", id, *reason)
	}
	return c.watchLoop(ctx, id, w, out)
}

// parseWithID parses args whose first word may be an id before the flags
// (tocsin retract ID --reason R), or after them.
func parseWithID(fs *flag.FlagSet, args []string) (string, error) {
	id, rest := "", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, rest = args[0], args[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return "", err
	}
	if id == "" && fs.NArg() > 0 {
		id = fs.Arg(0)
	}
	return id, nil
}

func status(args []string) error { return runStatus(args, os.Stdout) }

// runStatus lists the newest alerts, or shows one with a line per channel.
func runStatus(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	c := newClient(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON (for scripts)")
	id, rest := "", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, rest = args[0], args[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if id == "" {
		var list struct {
			Alerts []alertRow `json:"alerts"`
		}
		if ok, err := c.get("/v1/alerts?limit=20", *asJSON, out, &list); !ok || err != nil {
			return err
		}
		printAlerts(out, list.Alerts)
		return nil
	}
	var a alertAnswer
	if ok, err := c.get("/v1/alerts/"+id, *asJSON, out, &a); !ok || err != nil {
		return err
	}
	for _, l := range progressLines(&a) {
		fmt.Fprintln(out, l)
	}
	return nil
}

// maintenance puts a trigger source into maintenance, or ends it.
func maintenance(args []string) error {
	fs := flag.NewFlagSet("maintenance", flag.ContinueOnError)
	c := newClient(fs)
	reason := fs.String("reason", "", "why (required to start)")
	dur := fs.Duration("for", 0, "how long, e.g. 4h (or --until)")
	until := fs.String("until", "", "end time, RFC 3339")
	end := fs.Bool("end", false, "end maintenance now")
	src, rest := "", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		src, rest = args[0], args[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if src == "" {
		return errors.New("usage: tocsin maintenance SOURCE --reason R --for 4h | --until T | --end")
	}
	path := "/v1/sources/" + src + "/maintenance"
	if *end {
		return c.do("DELETE", path, nil, nil)
	}
	body := map[string]any{"reason": *reason}
	if *dur > 0 {
		body["for"] = dur.String()
	}
	if *until != "" {
		body["until"] = *until
	}
	return c.do("PUT", path, body, nil)
}

// sources lists trigger sources and their maintenance.
func sources(args []string) error { return runSources(args, os.Stdout) }

func runSources(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("sources", flag.ContinueOnError)
	c := newClient(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON (for scripts)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var list struct {
		Sources []sourceRow `json:"sources"`
	}
	if ok, err := c.get("/v1/sources", *asJSON, out, &list); !ok || err != nil {
		return err
	}
	printSources(out, list.Sources)
	return nil
}

// triggerStatuses are the decisions the trigger audit knows.
var triggerStatuses = []string{"accepted", "duplicate", "rejected", "quarantined", "reset", "lowered", "refused"}

// triggers prints the trigger audit.
func triggers(args []string) error { return runTriggers(args, os.Stdout) }

func runTriggers(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("triggers", flag.ContinueOnError)
	c := newClient(fs)
	st := fs.String("status", "", "only "+strings.Join(triggerStatuses, ", "))
	asJSON := fs.Bool("json", false, "print the API's JSON (for scripts)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	q := ""
	if *st != "" {
		if !slices.Contains(triggerStatuses, *st) {
			return fmt.Errorf("--status %q is not one of %s", *st, strings.Join(triggerStatuses, ", "))
		}
		q = "?status=" + *st
	}
	var list struct {
		Triggers []triggerRow `json:"triggers"`
	}
	if ok, err := c.get("/v1/triggers"+q, *asJSON, out, &list); !ok || err != nil {
		return err
	}
	printTriggers(out, list.Triggers)
	return nil
}
