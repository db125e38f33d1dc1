package sms_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/adapters/sms"
	"github.com/tocsin-alert/tocsin/alert"
)

func TestSegments(t *testing.T) {
	for _, tt := range []struct {
		name, text string
		n          int
		enc        string
	}{
		{"empty", "", 1, "GSM-7"},
		{"160 GSM-7", strings.Repeat("a", 160), 1, "GSM-7"},
		{"161 GSM-7", strings.Repeat("a", 161), 2, "GSM-7"},
		{"306 GSM-7 in two", strings.Repeat("a", 306), 2, "GSM-7"},
		{"307 GSM-7 in three", strings.Repeat("a", 307), 3, "GSM-7"},
		{"umlauts are GSM-7", strings.Repeat("ä", 160), 1, "GSM-7"},
		{"€ takes two septets", strings.Repeat("€", 80), 1, "GSM-7"},
		{"€ takes two septets, 81", strings.Repeat("€", 81), 2, "GSM-7"},
		{"70 UCS-2", "„" + strings.Repeat("a", 69), 1, "UCS-2"},
		{"71 UCS-2", "„" + strings.Repeat("a", 70), 2, "UCS-2"},
		{"134 UCS-2 in two", "„" + strings.Repeat("a", 133), 2, "UCS-2"},
		{"135 UCS-2 in three", "„" + strings.Repeat("a", 134), 3, "UCS-2"},
		{"emoji are two UTF-16 units", strings.Repeat("🚨", 35), 1, "UCS-2"},
		{"emoji 36", strings.Repeat("🚨", 36), 2, "UCS-2"},
	} {
		n, enc := sms.Segments(tt.text)
		if n != tt.n || enc != tt.enc {
			t.Errorf("%s: Segments = %d %s, want %d %s", tt.name, n, enc, tt.n, tt.enc)
		}
	}
}

// The prepared German false-alarm notice is UCS-2 („…“) and two segments:
// pacing must count it as two.
func TestFalseAlarmNoticeSegments(t *testing.T) {
	a := &alert.Alert{Event: "Amok", Headline: "Amokalarm Bildungszentrum Soest", Sent: time.Date(2025, 11, 11, 10, 2, 0, 0, time.UTC)}
	n, enc := sms.Segments(a.Text(alert.MessageRetraction, "false_alarm", "de", nil))
	if n != 2 || enc != "UCS-2" {
		t.Fatalf("German false-alarm notice: %d %s segments, want 2 UCS-2", n, enc)
	}
}
