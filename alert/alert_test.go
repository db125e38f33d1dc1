package alert

import (
	"slices"
	"testing"
	"time"
)

func TestPriorityOf(t *testing.T) {
	tests := []struct {
		sev  Severity
		urg  Urgency
		want Priority
	}{
		{SeverityExtreme, UrgencyImmediate, 9},
		{SeveritySevere, UrgencyImmediate, 8},
		{SeverityExtreme, UrgencyExpected, 9},
		{SeveritySevere, UrgencyExpected, 7},
		{SeverityModerate, UrgencyImmediate, 6},
		{SeverityMinor, UrgencyFuture, 3},
		{SeverityMinor, UrgencyPast, 2},
		{SeverityUnknown, UrgencyUnknown, 0},
	}
	for _, tt := range tests {
		if got := PriorityOf(tt.sev, tt.urg); got != tt.want {
			t.Errorf("PriorityOf(%s, %s) = %d, want %d", tt.sev, tt.urg, got, tt.want)
		}
	}
	// Life-safety alerts are at least PriorityLifeSafety, and every alert is below a retraction.
	for s := SeverityUnknown; s <= SeverityExtreme; s++ {
		for u := UrgencyUnknown; u <= UrgencyImmediate; u++ {
			p := PriorityOf(s, u)
			if p >= PriorityRetraction || p < 0 {
				t.Errorf("PriorityOf(%s, %s) = %d, outside 0..9", s, u, p)
			}
			if s >= SeveritySevere && u == UrgencyImmediate && p < PriorityLifeSafety {
				t.Errorf("PriorityOf(%s, %s) = %d, want life-safety", s, u, p)
			}
		}
	}
}

func TestParseTargetRoundTrip(t *testing.T) {
	tg := Target{Kind: KindSiren, ID: "school-north"}
	got, err := ParseTarget(tg.Key())
	if err != nil || got != tg {
		t.Fatalf("ParseTarget(%q) = %v, %v", tg.Key(), got, err)
	}
	for _, bad := range []string{"", "siren", "/x", "siren/"} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q) = nil error", bad)
		}
	}
}

func TestTexts(t *testing.T) {
	sent := time.Date(2026, 11, 11, 9, 2, 0, 0, time.UTC)
	a := &Alert{Status: StatusActual, Event: "Amok", Headline: "Amokalarm Bildungszentrum", Sent: sent,
		Instruction: "Bleiben Sie in den Räumen"}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	tests := []struct {
		a            *Alert
		msg          Message
		reason, lang string
		want         string
	}{
		{a, MessageAlert, "", "de-DE", "WARNUNG: Amokalarm Bildungszentrum. Bleiben Sie in den Räumen."},
		{a, MessageRetraction, "false_alarm", "de", "ENTWARNUNG: Die Warnung „Amokalarm Bildungszentrum“ von 10:02 war ein Fehlalarm. Es besteht keine Gefahr."},
		{a, MessageRetraction, "all_clear", "en", "ALL CLEAR: The danger of the warning \"Amokalarm Bildungszentrum\" of 10:02 is over."},
		{a, MessageAlert, "", "fr", "WARNING: Amokalarm Bildungszentrum. Bleiben Sie in den Räumen."},
		{&Alert{Status: StatusExercise, Event: "Probe", Sent: sent}, MessageAlert, "", "de", "ÜBUNG – KEIN ECHTER ALARM. WARNUNG: Probe."},
		{&Alert{Status: StatusTest, Event: "Probe", Sent: sent}, MessageRetraction, "false_alarm", "en", "EXERCISE – NOT A REAL ALARM. ALL CLEAR: The warning \"Probe\" of 10:02 was a false alarm. There is no danger."},
	}
	for _, tt := range tests {
		if got := tt.a.Text(tt.msg, tt.reason, tt.lang, berlin); got != tt.want {
			t.Errorf("Text(%s, %s, %s) =\n%q, want\n%q", tt.msg, tt.reason, tt.lang, got, tt.want)
		}
	}
}

// Each recipient gets the alert's text in their language: the same tag,
// then the same base language, then English, then the primary language.
func TestInfoFor(t *testing.T) {
	a := &Alert{Event: "Unwetter", Language: "de-DE", Headline: "Unwetterwarnung", Infos: []Info{
		{Language: "en-GB", Headline: "Severe weather warning"},
		{Language: "fr", Event: "Orage", Headline: "Alerte météo"},
	}}
	for _, tt := range []struct{ lang, headline, event string }{
		{"de-DE", "Unwetterwarnung", "Unwetter"},
		{"de", "Unwetterwarnung", "Unwetter"},
		{"en", "Severe weather warning", "Unwetter"}, // a block without an event takes the alert's
		{"en-US", "Severe weather warning", "Unwetter"},
		{"fr-CH", "Alerte météo", "Orage"},
		{"tr", "Severe weather warning", "Unwetter"}, // no Turkish: English
		{"", "Severe weather warning", "Unwetter"},
	} {
		if in := a.InfoFor(tt.lang); in.Headline != tt.headline || in.Event != tt.event {
			t.Errorf("InfoFor(%q) = %+v, want %q / %q", tt.lang, in, tt.headline, tt.event)
		}
	}
	noEN := &Alert{Event: "Amok", Language: "de", Headline: "Amokalarm"}
	if in := noEN.InfoFor("fr"); in.Headline != "Amokalarm" {
		t.Errorf("InfoFor(fr) without English = %+v, want the primary (German) text", in)
	}
}

// Configured texts replace the defaults per language and channel kind; a
// language configured in full counts as one Tocsin can write in.
func TestConfiguredTexts(t *testing.T) {
	sent := time.Date(2026, 11, 11, 9, 2, 0, 0, time.UTC)
	a := &Alert{Status: StatusActual, Event: "Amok", Headline: "Amokalarm", Language: "de", Sent: sent,
		Infos: []Info{{Language: "en", Headline: "Active shooter"}}}
	var tx Texts
	tx.Set("false_alarm", "de", KindSMS, "FEHLALARM {headline} ({time})")
	tx.Set("false_alarm", "en", "", "FALSE ALARM: {headline}")
	if got := tx.Text(a, KindSMS, MessageRetraction, "false_alarm", "de"); got != "FEHLALARM Amokalarm (09:02)" {
		t.Errorf("sms de = %q", got)
	}
	if got := tx.Text(a, KindVoice, MessageRetraction, "false_alarm", "de"); got != "ENTWARNUNG: Die Warnung „Amokalarm“ von 09:02 war ein Fehlalarm. Es besteht keine Gefahr." {
		t.Errorf("voice de (default) = %q", got)
	}
	if got := tx.Text(a, KindVoice, MessageRetraction, "false_alarm", "en"); got != "FALSE ALARM: Active shooter" {
		t.Errorf("voice en = %q; want the configured text with the English headline", got)
	}
	if m := tx.Has("pl", ""); len(m) != len(TextKeys) {
		t.Errorf("Has(pl) missing %v, want every key", m)
	}
	for _, k := range TextKeys {
		tx.Set(k, "pl", "", "PL "+k)
	}
	if !slices.Contains(tx.Languages(), "pl") {
		t.Errorf("Languages = %v, want pl once complete", tx.Languages())
	}
}

func TestOwnRetractionTexts(t *testing.T) {
	a := &Alert{Event: "Amok", Headline: "Amok Schule Nord", Language: "de", Sent: time.Date(2026, 12, 2, 9, 5, 0, 0, time.UTC),
		RetractionTexts: map[string]map[string]string{
			"false_alarm": {"de": "FEHLALARM {headline} ({time})", "de/sms": "SMS: Fehlalarm {headline}"},
		}}
	var tx Texts
	if got := tx.Text(a, KindPA, MessageRetraction, "false_alarm", "de"); got != "FEHLALARM Amok Schule Nord (09:05)" {
		t.Errorf("pa: %q", got)
	}
	if got := tx.Text(a, KindSMS, MessageRetraction, "false_alarm", "de-DE"); got != "SMS: Fehlalarm Amok Schule Nord" {
		t.Errorf("sms: %q", got)
	}
	// A reason the alert has no own text for falls back to the configured one.
	if got, want := tx.Text(a, KindPA, MessageRetraction, "all_clear", "de"), (&Alert{Headline: a.Headline, Sent: a.Sent}); got == "" || got != tx.Text(want, KindPA, MessageRetraction, "all_clear", "de") {
		t.Errorf("all_clear: %q", got)
	}
}
