package config

import (
	"fmt"
	"slices"
	"time"

	"github.com/tocsin-alert/tocsin/alert"
)

// Probes are the synthetic checks that answer "can we still alert?": each
// target of a kind is probed on its schedule (0: never), by one gateway
// instance at a time, and a failing probe is told to the on-duty operators
// on another channel.
type Probes struct {
	// Sirens get a silent "probe" command they must ack (never sounded).
	Sirens time.Duration `yaml:"sirens"`
	// PA controllers get their health call (HTTP: GET on their url; MQTT: a
	// probe command they ack and never play).
	PA time.Duration `yaml:"pa"`
	// Twilio accounts get an API check (the account fetched with its token).
	Twilio time.Duration `yaml:"twilio"`
	// Dispatch centres (and site gateways) get a CAP message with status
	// Test that they must Ack within the timeout.
	Dispatch time.Duration `yaml:"dispatch"`
	// TestSMS sends a real SMS through the SMS route to an on-duty
	// operator on a schedule (e.g. 168h, weekly); it passes when the
	// provider reports it delivered within TestSMSTimeout (5m).
	TestSMS        time.Duration `yaml:"test_sms"`
	TestSMSTo      string        `yaml:"test_sms_to"`
	TestSMSTimeout time.Duration `yaml:"test_sms_timeout"`
	// Timeout bounds one probe (10s).
	Timeout time.Duration `yaml:"timeout"`
	// Notify are the channels a failing probe is told on, to every on-duty
	// operator with a phone (sms, voice); never the failing probe's own kind.
	Notify []alert.Kind `yaml:"notify"`
}

func (c *Config) validateProbes(v *validator) {
	p := &c.Probes
	if p.Timeout == 0 {
		p.Timeout = 10 * time.Second
	}
	if p.Notify == nil {
		p.Notify = []alert.Kind{alert.KindSMS, alert.KindVoice}
	}
	for f, d := range map[string]time.Duration{"probes.sirens": p.Sirens, "probes.twilio": p.Twilio, "probes.dispatch": p.Dispatch, "probes.pa": p.PA} {
		if d != 0 && (d < time.Second || d > 7*24*time.Hour) {
			v.add(f, fmt.Sprintf("%s: want 0 (off) or between 1s and 168h", d))
		}
	}
	if p.TestSMSTimeout == 0 {
		p.TestSMSTimeout = 5 * time.Minute
	}
	if p.TestSMS != 0 {
		if p.TestSMS < time.Second || p.TestSMS > 31*24*time.Hour {
			v.add("probes.test_sms", fmt.Sprintf("%s: want 0 (off) or between 1s and 744h", p.TestSMS))
		}
		if o := c.Operator(p.TestSMSTo); o == nil || o.Phone == "" {
			v.add("probes.test_sms_to", fmt.Sprintf("%q: must be an operator with a phone", p.TestSMSTo))
		}
	}
	if p.Timeout < 100*time.Millisecond || p.Timeout > time.Minute {
		v.add("probes.timeout", "must be between 100ms and 1m")
	}
	for i, k := range p.Notify {
		if k != alert.KindSMS && k != alert.KindVoice {
			v.add(fmt.Sprintf("probes.notify[%d]", i), fmt.Sprintf("%q: operators are told by sms or voice", k))
		}
	}
	if (p.Sirens > 0 || p.Twilio > 0 || p.Dispatch > 0 || p.PA > 0 || p.TestSMS > 0) && !slices.ContainsFunc(c.Operators, func(o Operator) bool { return o.OnDuty && o.Phone != "" }) {
		v.add("probes", "nobody would hear of a failing probe: give an operator on_duty: true and a phone")
	}
}
