package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/config"
)

// Without a rule, a siren needs Severe and every other channel takes every
// severity; the first matching rule decides, by channel, zone and event
// (case-insensitive); "never" keeps an event off a channel.
func TestChannelPolicyRules(t *testing.T) {
	c, err := config.Parse([]byte(`
zones: [{id: school}, {id: townhall}]
sirens: [{id: s1, zone: school}, {id: s2, zone: townhall}]
channel_policy:
  channels:
    - {channel: siren, events: [Probealarm], min_severity: never}
    - {channel: siren, zones: [townhall], min_severity: Moderate}
    - {channel: sms, min_severity: Minor}
  signals:
    - {events: [Fire, Brand], signal: fire}
  default_signal: warning
`))
	if err != nil {
		t.Fatal(err)
	}
	p := &c.ChannelPolicy
	for _, tt := range []struct {
		k     alert.Kind
		zone  string
		event string
		sev   alert.Severity
		want  bool
	}{
		{alert.KindSiren, "school", "Gewitter", alert.SeverityModerate, false},
		{alert.KindSiren, "school", "Gewitter", alert.SeveritySevere, true},
		{alert.KindSiren, "townhall", "Gewitter", alert.SeverityModerate, true},
		{alert.KindSiren, "townhall", "Gewitter", alert.SeverityMinor, false},
		{alert.KindSiren, "townhall", "PROBEALARM", alert.SeverityExtreme, false},
		{alert.KindSMS, "school", "Gewitter", alert.SeverityUnknown, false},
		{alert.KindSMS, "school", "Gewitter", alert.SeverityMinor, true},
		{alert.KindPA, "school", "Gewitter", alert.SeverityUnknown, true},
	} {
		if got := p.Rule(tt.k, tt.zone, tt.event).Allows(tt.sev); got != tt.want {
			t.Errorf("%s in %s for %s %s: allowed %v, want %v", tt.k, tt.zone, tt.sev, tt.event, got, tt.want)
		}
	}
	if p.Signal("brand") != "fire" || p.Signal("Amok") != "warning" {
		t.Errorf("signals: Brand %s, Amok %s; want fire, warning", p.Signal("brand"), p.Signal("Amok"))
	}
	m := c.PolicyMatrix()
	for _, want := range []string{"school               Severe    Unknown   Minor", "townhall             Moderate", "events Probealarm: siren from never in every zone", "warning for any other event; fire for Fire, Brand"} {
		if !strings.Contains(m, want) {
			t.Errorf("matrix lacks %q:\n%s", want, m)
		}
	}
	// The default signal is alarm.
	d, err := config.Parse([]byte("zones: [{id: z}]\n"))
	if err != nil || d.ChannelPolicy.Signal("Amok") != "alarm" {
		t.Errorf("default signal %q (%v); want alarm", d.ChannelPolicy.Signal("Amok"), err)
	}
}

// Every bad rule is named, and so is a trigger button the policy would never
// let reach anything.
func TestChannelPolicyProblems(t *testing.T) {
	t.Setenv("BTN_KEY", "button-key-long-enough")
	_, err := config.Parse([]byte(`
zones: [{id: school}]
sirens: [{id: s1, zone: school}]
triggers:
  sources: [{id: button, key_env: BTN_KEY, zones: [school]}]
  templates: [{trigger: storm, event: Sturm, severity: Moderate, urgency: Expected, channels: [siren]}]
channel_policy:
  channels:
    - {channel: horn, min_severity: Severe}
    - {channel: siren, zones: [mars], min_severity: Loud}
    - {channel: pa}
  signals:
    - {events: [Fire], signal: stop}
    - {signal: "Fire Alarm"}
    - {events: [Amok], signal: probe}
  default_signal: all_clear
`))
	var ps config.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v; want Problems", err)
	}
	got := err.Error()
	for _, want := range []string{
		`channel_policy.channels[0].channel: "horn" is not a channel kind`,
		`channel_policy.channels[1].zones[0]: zone "mars" is not defined`,
		`channel_policy.channels[1].min_severity:`,
		`channel_policy.channels[2].min_severity: required`,
		`channel_policy.signals[0].signal: "stop" is not a signal profile`,
		`channel_policy.signals[1].events: required`,
		`channel_policy.signals[1].signal: "Fire Alarm" is not a signal profile`,
		`channel_policy.default_signal: "all_clear" is not a signal profile`,
		`channel_policy.signals[2].signal: "probe" is not a signal profile`,
		`triggers.sources[0].zones: trigger "storm" (Sturm, Moderate) may use none of its channels [siren] in zone school`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
}
