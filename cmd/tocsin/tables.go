package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// The client commands print tables for people by default and the API's
// JSON with --json, for scripts.

// get fetches path and decodes it into out, or prints it raw with asJSON.
func (c *client) get(path string, asJSON bool, w io.Writer, out any) (bool, error) {
	code, b, err := c.request("GET", path, nil, nil)
	if err != nil {
		return false, err
	}
	if code >= 400 {
		return false, answerError(code, b)
	}
	if asJSON {
		fmt.Fprintln(w, pretty(b))
		return false, nil
	}
	return true, json.Unmarshal(b, out)
}

// alertRow is one alert in `tocsin status`.
type alertRow struct {
	alertAnswer
	Zones []string  `json:"zones"`
	Sent  time.Time `json:"sent"`
}

func printAlerts(w io.Writer, as []alertRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSTATUS\tEVENT\tZONES\tSENT")
	for _, a := range as {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.State, a.Status, a.Event, strings.Join(a.Zones, ","), a.Sent.Local().Format("2006-01-02 15:04:05"))
	}
	tw.Flush()
	if len(as) == 0 {
		fmt.Fprintln(w, "(no alerts)")
	}
}

type sourceRow struct {
	ID          string   `json:"id"`
	Zones       []string `json:"zones"`
	Maintenance *struct {
		Reason string    `json:"reason"`
		By     string    `json:"by"`
		Until  time.Time `json:"until"`
	} `json:"maintenance"`
}

func printSources(w io.Writer, ss []sourceRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tZONES\tMAINTENANCE")
	for _, s := range ss {
		m := "-"
		if s.Maintenance != nil {
			m = fmt.Sprintf("until %s by %s: %s", s.Maintenance.Until.Local().Format("2006-01-02 15:04"), s.Maintenance.By, s.Maintenance.Reason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.ID, strings.Join(s.Zones, ","), m)
	}
	tw.Flush()
}

type triggerRow struct {
	At      time.Time `json:"at"`
	Source  string    `json:"source"`
	EventID string    `json:"event_id"`
	Trigger string    `json:"trigger"`
	Zone    string    `json:"zone"`
	Status  string    `json:"status"`
	Reason  string    `json:"reason"`
	AlertID string    `json:"alert_id"`
	Handled string    `json:"handled"`
}

func printTriggers(w io.Writer, ts []triggerRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tSOURCE\tEVENT\tTRIGGER\tZONE\tSTATUS\tALERT\tREASON")
	for _, t := range ts {
		why := t.Reason
		if t.Handled != "" {
			why = strings.TrimSpace(why + " [" + t.Handled + "]")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.At.Local().Format("2006-01-02 15:04:05"), t.Source, t.EventID, t.Trigger, t.Zone, t.Status, t.AlertID, why)
	}
	tw.Flush()
}
