package sms_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/adapterstest"
	"github.com/tocsin-alert/tocsin/adapters/sms"
	"github.com/tocsin-alert/tocsin/adapters/twilioapi"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

const sid, token, phone = "AC00000000000000000000000000000001", "conformancetoken0123456789", "+491701234567"

func TestConformance(t *testing.T) {
	tw, err := fake.StartTwilio(fake.TwilioOptions{Accounts: map[string]string{sid: token}, NoCallbacks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tw.Close()
	people := map[string]adapters.Recipient{"staff.anna": {Phone: phone, Language: "de"}, "staff.bad": {Phone: "+12", Language: "en"}}
	invalid := alert.Target{Kind: alert.KindSMS, ID: "staff.bad"}
	adapterstest.Run(t, adapterstest.Harness{
		New: func(t *testing.T, log zerolog.Logger) adapters.Adapter {
			n, err := sms.New(sms.Config{Account: "main", Twilio: twilioapi.Account{SID: sid, AuthToken: token, BaseURL: tw.URL, Timeout: 2 * time.Second},
				From: "+4930123456", Rate: 100, CallbackURL: "http://127.0.0.1:1/v1/callbacks/twilio",
				Recipients: func(id string) (adapters.Recipient, bool) { r, ok := people[id]; return r, ok }})
			if err != nil {
				t.Fatal(err)
			}
			return n
		},
		Target:  alert.Target{Kind: alert.KindSMS, ID: "staff.anna"},
		Invalid: &invalid,
		Break: func(mode string) {
			tw.SetFailure(map[string]fake.TwilioFailure{"error": {Status: 503}, "hang": {Hang: true}}[mode])
		},
		Received: func(id string, msg alert.Message) int {
			n := 0
			for _, m := range tw.Messages() {
				if strings.HasSuffix(m.StatusCallback, "/"+url.PathEscape(id)) && m.To == phone {
					n++
				}
			}
			return n
		},
		Secrets: []string{phone, "1701234567", token},
	})
	// What Twilio got: the German text, a validity within the minute left, a callback per delivery.
	ms := tw.Messages()
	if len(ms) < 2 || !strings.HasPrefix(ms[0].Body, "WARNUNG:") || !strings.HasPrefix(ms[1].Body, "ENTWARNUNG:") {
		t.Fatalf("messages = %+v; want the German warning, then the all-clear", ms)
	}
	if vp := ms[0].ValidityPeriod; vp < 55 || vp > 60 {
		t.Fatalf("ValidityPeriod = %d, want the ~60s left before expiry", vp)
	}
}

func TestValidityPeriodBounds(t *testing.T) {
	for _, tt := range []struct {
		left time.Duration
		want int
	}{{500 * time.Millisecond, 1}, {90 * time.Second, 90}, {48 * time.Hour, 36000}} {
		if got := sms.ValidityPeriod(time.Now().Add(tt.left)); got < tt.want-1 || got > tt.want {
			t.Errorf("ValidityPeriod(+%v) = %d, want %d", tt.left, got, tt.want)
		}
	}
}
