package alert

import (
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
