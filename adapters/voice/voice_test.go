package voice_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/adapterstest"
	"github.com/tocsin-alert/tocsin/adapters/twilioapi"
	"github.com/tocsin-alert/tocsin/adapters/voice"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

const sid, token, phone = "AC00000000000000000000000000000002", "voicetoken0123456789abcdef", "+441632960123"

func TestConformance(t *testing.T) {
	tw, err := fake.StartTwilio(fake.TwilioOptions{Accounts: map[string]string{sid: token}, NoCallbacks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tw.Close()
	var n *voice.Notifier
	adapterstest.Run(t, adapterstest.Harness{
		New: func(t *testing.T, log zerolog.Logger) adapters.Adapter {
			n, err = voice.New(voice.Config{Account: "main", Twilio: twilioapi.Account{SID: sid, AuthToken: token, BaseURL: tw.URL, Timeout: 2 * time.Second},
				From: "+4930123456", Rate: 50, Voice: "alice", Repeat: 3, CallbackURL: "http://127.0.0.1:1/cb", Log: log,
				Recipients: func(id string) (adapters.Recipient, bool) {
					return adapters.Recipient{Phone: phone, Language: "en"}, id == "team.bob"
				}})
			if err != nil {
				t.Fatal(err)
			}
			return n
		},
		Target:  alert.Target{Kind: alert.KindVoice, ID: "team.bob"},
		Invalid: &alert.Target{Kind: alert.KindVoice, ID: "team.nobody"},
		Break: func(mode string) {
			tw.SetFailure(map[string]fake.TwilioFailure{"error": {Status: 500}, "hang": {Hang: true}}[mode])
		},
		Received: func(id string, msg alert.Message) int {
			c := 0
			for _, call := range tw.Calls() {
				if strings.HasSuffix(call.StatusCallback, "/"+url.PathEscape(id)) {
					c++
				}
			}
			return c
		},
		Secrets: []string{phone, token},
	})
	calls := tw.Calls()
	if len(calls) < 2 || !strings.Contains(calls[0].Twiml, `language="en-US" loop="3"`) || !strings.Contains(calls[0].Twiml, "WARNING: Test.") ||
		!strings.Contains(calls[1].Twiml, "ALL CLEAR") {
		t.Fatalf("calls = %+v; want the English warning spoken 3 times, then the all-clear", calls)
	}
	// A retracted alert's queued calls are cancelled at Twilio.
	a := &alert.Alert{ID: "cancel-me", Status: alert.StatusActual, Event: "Fire"}
	tg := alert.Target{Kind: alert.KindVoice, ID: "team.bob"}
	d := alert.Delivery{ID: alert.DeliveryID(a.ID, tg, alert.MessageAlert), Alert: a, Target: tg, Message: alert.MessageAlert, Expires: time.Now().Add(time.Minute)}
	if err := n.Deliver(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	n.CancelAlert(a.ID)
	last := tw.Calls()[len(tw.Calls())-1]
	if !last.CancelRequested || last.Status != "canceled" {
		t.Fatalf("call after CancelAlert = %+v, want canceled", last)
	}
}

func TestTwiMLEscapes(t *testing.T) {
	got := voice.TwiML(`Fire <"&"> now`, "Polly.Vicki", "de", 2)
	want := `<?xml version="1.0" encoding="UTF-8"?><Response><Say voice="Polly.Vicki" language="de-DE" loop="2">Fire &lt;&#34;&amp;&#34;&gt; now</Say></Response>`
	if got != want {
		t.Fatalf("TwiML =\n%s\nwant\n%s", got, want)
	}
}
