package cap_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/cap"
)

func TestTimeIsWrittenWithAnOffset(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	for _, tt := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 22, 9, 2, 0, 500, time.UTC), "2026-11-22T09:02:00-00:00"},
		{time.Date(2026, 11, 22, 10, 2, 0, 0, berlin), "2026-11-22T10:02:00+01:00"},
	} {
		if got := cap.FormatTime(tt.in); got != tt.want {
			t.Errorf("FormatTime(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if _, err := cap.ParseTime("2026-11-22T09:02:00Z"); err == nil || !strings.Contains(err.Error(), "-00:00") {
		t.Errorf("ParseTime(Z) = %v, want an error that says to write -00:00", err)
	}
}

// Encode → Decode gives back the same message.
func TestRoundTrip(t *testing.T) {
	exp := cap.Time{Time: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	in := &cap.Alert{Identifier: "id-1", Sender: "tocsin@example.org", Sent: cap.Time{Time: exp.Add(-time.Hour)}, Status: "Actual",
		MsgType: "Update", Scope: "Public", References: cap.JoinReferences(cap.Reference{Sender: "a@b", Identifier: "x", Sent: "2026-11-22T08:00:00-00:00"}),
		Infos: []cap.Info{{Language: "de-DE", Categories: []string{"Safety"}, Event: "Amok", ResponseTypes: []string{"AllClear"},
			Urgency: "Past", Severity: "Minor", Certainty: "Observed", Expires: &exp, Headline: "Entwarnung & <Ende>",
			Areas: []cap.Area{{AreaDesc: "Schule", Geocodes: []cap.Value{{ValueName: "tocsin:zone", Value: "school"}}}}}}}
	b, err := cap.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cap.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Decode(Encode) = %v\n%s", err, b)
	}
	b2, _ := cap.Encode(out)
	if !bytes.Equal(b, b2) {
		t.Fatalf("round trip differs:\n%s\n---\n%s", b, b2)
	}
	refs, err := cap.ParseReferences(out.References)
	if err != nil || len(refs) != 1 || refs[0].Identifier != "x" {
		t.Fatalf("ParseReferences = %v, %v", refs, err)
	}
}

func TestDecodeRefusesDoctype(t *testing.T) {
	_, err := cap.Decode(strings.NewReader(`<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"/>`))
	if err == nil || !strings.Contains(err.Error(), "DOCTYPE") {
		t.Fatalf("Decode(DOCTYPE) = %v", err)
	}
}
