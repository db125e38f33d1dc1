package main

import (
	"bytes"
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

// do sends a request and prints the answer, pretty; a problem answer is an error.
func (c *client) do(method, path string, body any, header map[string]string) error {
	if c.key == "" {
		return errors.New("no API key: set TOCSIN_KEY")
	}
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimRight(c.url, "/")+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var pretty bytes.Buffer
	if json.Indent(&pretty, b, "", "  ") != nil {
		pretty.Write(b)
	}
	if resp.StatusCode >= 400 {
		return fmt.Errorf("%s\n%s", resp.Status, pretty.String())
	}
	fmt.Println(pretty.String())
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
	fs := flag.NewFlagSet("retract", flag.ContinueOnError)
	c := newClient(fs)
	reason := fs.String("reason", "false_alarm", "false_alarm, all_clear or superseded")
	note := fs.String("note", "", "free text for the record")
	id, rest := "", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, rest = args[0], args[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if id == "" && fs.NArg() > 0 {
		id = fs.Arg(0)
	}
	if id == "" {
		return errors.New("usage: tocsin retract ID [--reason R] [--note N]")
	}
	return c.do("POST", "/v1/alerts/"+id+"/retract", map[string]string{"reason": *reason, "note": *note}, nil)
}

func status(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	c := newClient(fs)
	id, rest := "", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, rest = args[0], args[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if id == "" {
		return c.do("GET", "/v1/alerts?limit=20", nil, nil)
	}
	return c.do("GET", "/v1/alerts/"+id, nil, nil)
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
func sources(args []string) error {
	fs := flag.NewFlagSet("sources", flag.ContinueOnError)
	c := newClient(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return c.do("GET", "/v1/sources", nil, nil)
}

// triggers prints the trigger audit.
func triggers(args []string) error {
	fs := flag.NewFlagSet("triggers", flag.ContinueOnError)
	c := newClient(fs)
	st := fs.String("status", "", "only accepted, duplicate, rejected, quarantined or reset")
	if err := fs.Parse(args); err != nil {
		return err
	}
	q := ""
	if *st != "" {
		q = "?status=" + *st
	}
	return c.do("GET", "/v1/triggers"+q, nil, nil)
}
