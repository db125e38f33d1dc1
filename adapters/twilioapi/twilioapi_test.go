package twilioapi_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	api "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/twilioapi"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

const sid, token = "AC00000000000000000000000000000001", "secrettoken0123456789abcdef"

func TestClassifyAgainstTheFake(t *testing.T) {
	tw, err := fake.StartTwilio(fake.TwilioOptions{Accounts: map[string]string{sid: token}})
	if err != nil {
		t.Fatal(err)
	}
	defer tw.Close()
	c, err := twilioapi.New(twilioapi.Account{SID: sid, AuthToken: token, BaseURL: tw.URL, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	send := func(to string) error {
		_, err := c.Api.CreateMessage((&api.CreateMessageParams{}).SetTo(to).SetFrom("+4930000000").SetBody("x"))
		return c.Classify("twilio: create message", err)
	}
	if err := send("+491701234567"); err != nil {
		t.Fatalf("send = %v", err)
	}
	tests := []struct {
		name      string
		failure   fake.TwilioFailure
		to        string
		permanent bool
		delay     time.Duration
	}{
		{"bad number is permanent and redacted", fake.TwilioFailure{}, "+49 170 123", true, 0},
		{"429 honours Retry-After", fake.TwilioFailure{Status: 429, RetryAfter: 3}, "+491701234567", false, 3 * time.Second},
		{"500 is retryable", fake.TwilioFailure{Status: 500}, "+491701234567", false, 0},
		{"401 is retryable (the account's breaker opens)", fake.TwilioFailure{Status: 401}, "+491701234567", false, 0},
		{"timeout is retryable", fake.TwilioFailure{Hang: true}, "+491701234567", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tw.SetFailure(tt.failure)
			err := send(tt.to)
			if err == nil || adapters.IsPermanent(err) != tt.permanent {
				t.Fatalf("send = %v; want permanent=%v", err, tt.permanent)
			}
			if strings.Contains(err.Error(), "170") {
				t.Errorf("error %q leaks the phone number", err)
			}
			var de *adapters.DelayError
			if tt.delay > 0 && (!errors.As(err, &de) || de.After < tt.delay-time.Second) {
				t.Errorf("error %v: want a delay of about %v", err, tt.delay)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"The 'To' number +491701234567 is not valid": "The 'To' number [number] is not valid",
		"call 0170 1234567 now":                      "call [number] now",
		"error 21211":                                "error 21211",
	} {
		if got := twilioapi.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
