package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/tocsin-alert/tocsin/alert"
)

// ChannelPolicy decides which actual alerts may use which channels, per zone,
// severity and event, and which signal a siren sounds for each event.
//
// A Moderate thunderstorm warning must not sound a school's sirens: without
// a rule of its own, a siren is used only from Severe up. Test and exercise
// alerts are not held back by the policy (they reach only targets that take
// drills, and a siren sounds them as "test").
type ChannelPolicy struct {
	// Channels are rules, tried in order; the first whose channel, zones and
	// events match decides. Where none matches, sirens need Severe and every
	// other channel takes every severity.
	Channels []ChannelRule `yaml:"channels"`
	// Signals name the siren signal (a controller profile such as "fire" or
	// "amok") per event; the first rule naming the event wins.
	Signals []SignalRule `yaml:"signals"`
	// DefaultSignal is what a siren sounds for an actual alert no signal rule
	// names ("alarm").
	DefaultSignal string `yaml:"default_signal"`
}

// ChannelRule lets a channel kind be used from a severity up.
type ChannelRule struct {
	Channel alert.Kind `yaml:"channel"`
	// Zones the rule covers; empty is every zone.
	Zones []string `yaml:"zones"`
	// Events the rule covers (CAP event names, case-insensitive); empty is every event.
	Events []string `yaml:"events"`
	// MinSeverity is the lowest severity that may use the channel: Extreme,
	// Severe, Moderate, Minor, Unknown, or "never".
	MinSeverity string `yaml:"min_severity"`

	min   alert.Severity
	never bool
}

// SignalRule names the siren signal for events.
type SignalRule struct {
	Events []string `yaml:"events"`
	Signal string   `yaml:"signal"`
}

// SirenDefaultMin is the lowest severity that sounds a siren where no rule says otherwise.
const SirenDefaultMin = alert.SeveritySevere

// defaultRule is the built-in rule for a channel kind no configured rule matched.
func defaultRule(k alert.Kind) ChannelRule {
	if k == alert.KindSiren {
		return ChannelRule{Channel: k, MinSeverity: SirenDefaultMin.String(), min: SirenDefaultMin}
	}
	return ChannelRule{Channel: k, MinSeverity: alert.SeverityUnknown.String(), min: alert.SeverityUnknown}
}

// Rule is the rule that decides for channel kind k, zone and event.
func (p *ChannelPolicy) Rule(k alert.Kind, zone, event string) ChannelRule {
	for _, r := range p.Channels {
		if r.Channel == k && (len(r.Zones) == 0 || slices.Contains(r.Zones, zone)) && (len(r.Events) == 0 || containsFold(r.Events, event)) {
			return r
		}
	}
	return defaultRule(k)
}

// Allows reports whether the rule lets an alert of severity sev use its channel.
func (r ChannelRule) Allows(sev alert.Severity) bool { return !r.never && sev >= r.min }

// Why says, for a refused severity, what the rule asks for.
func (r ChannelRule) Why(zone string, sev alert.Severity) string {
	if r.never {
		return fmt.Sprintf("the channel policy never uses %s in zone %s for this event", r.Channel, zone)
	}
	return fmt.Sprintf("severity %s is below %s, the lowest the channel policy allows on %s in zone %s", sev, r.MinSeverity, r.Channel, zone)
}

// Signal is the signal a siren sounds for an actual alert of event.
func (p *ChannelPolicy) Signal(event string) string {
	for _, r := range p.Signals {
		if containsFold(r.Events, event) {
			return r.Signal
		}
	}
	if p.DefaultSignal == "" {
		return "alarm"
	}
	return p.DefaultSignal
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}

// signalName is a controller profile: lower case, digits and '_'.
var signalName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// reservedSignals are the signals Tocsin itself sends for retractions,
// updates, drills and probes; a profile cannot take their names (a profile
// named probe would turn every alarm into a silent ack).
var reservedSignals = []string{"stop", "all_clear", "test", "probe"}

func (c *Config) validatePolicy(v *validator, zones map[string]bool) {
	p := &c.ChannelPolicy
	for i := range p.Channels {
		r := &p.Channels[i]
		f := fmt.Sprintf("channel_policy.channels[%d]", i)
		if !slices.Contains(alert.Kinds, r.Channel) {
			v.add(f+".channel", fmt.Sprintf("%q is not a channel kind (siren, pa, sms, voice, dispatch)", r.Channel))
		}
		for j, z := range r.Zones {
			if !zones[z] {
				v.add(fmt.Sprintf("%s.zones[%d]", f, j), fmt.Sprintf("zone %q is not defined under zones", z))
			}
		}
		switch {
		case r.MinSeverity == "":
			v.add(f+".min_severity", "required: Extreme, Severe, Moderate, Minor, Unknown or never")
		case strings.EqualFold(r.MinSeverity, "never"):
			r.never = true
		default:
			s, err := alert.ParseSeverity(r.MinSeverity)
			if err != nil {
				v.add(f+".min_severity", err.Error()+", or never")
			}
			r.min = s
		}
	}
	check := func(field, s string) {
		if !signalName.MatchString(s) || slices.Contains(reservedSignals, s) {
			v.add(field, fmt.Sprintf("%q is not a signal profile: lower-case letters, digits and '_', and not stop, all_clear, test or probe", s))
		}
	}
	for i, r := range p.Signals {
		f := fmt.Sprintf("channel_policy.signals[%d]", i)
		if len(r.Events) == 0 {
			v.add(f+".events", "required: the events that sound this signal")
		}
		check(f+".signal", r.Signal)
	}
	if p.DefaultSignal != "" {
		check("channel_policy.default_signal", p.DefaultSignal)
	}
	// A trigger template that could never reach any channel in a zone its
	// sources may trigger is a button that does nothing: say so now, not
	// when someone presses it.
	for i, s := range c.Triggers.Sources {
		for _, z := range s.Zones {
			for _, tp := range c.Triggers.Templates {
				if len(s.Triggers) > 0 && !slices.Contains(s.Triggers, tp.Trigger) {
					continue
				}
				sev, err := alert.ParseSeverity(tp.Severity)
				if err != nil || tp.Status != "" && tp.Status != alert.StatusActual || len(tp.Channels) == 0 {
					continue
				}
				ok := false
				for _, k := range tp.Channels {
					ok = ok || p.Rule(k, z, tp.Event).Allows(sev)
				}
				if !ok {
					v.add(fmt.Sprintf("triggers.sources[%d].zones", i), fmt.Sprintf("trigger %q (%s, %s) may use none of its channels %v in zone %s under the channel policy", tp.Trigger, tp.Event, sev, tp.Channels, z))
				}
			}
		}
	}
}

// PolicyMatrix is the channel policy spelled out: for each zone, the lowest
// severity each channel kind takes for any event, then the rules that name
// events. config check prints it.
func (c *Config) PolicyMatrix() string {
	var b strings.Builder
	b.WriteString("channel policy (lowest severity that may use each channel, actual alerts):\n")
	fmt.Fprintf(&b, "  %-20s", "zone")
	for _, k := range alert.Kinds {
		fmt.Fprintf(&b, " %-9s", k)
	}
	b.WriteString("\n")
	for _, z := range c.Zones {
		fmt.Fprintf(&b, "  %-20s", z.ID)
		for _, k := range alert.Kinds {
			fmt.Fprintf(&b, " %-9s", c.ChannelPolicy.Rule(k, z.ID, "").minName())
		}
		b.WriteString("\n")
	}
	for _, r := range c.ChannelPolicy.Channels {
		if len(r.Events) == 0 {
			continue
		}
		zs := "every zone"
		if len(r.Zones) > 0 {
			zs = strings.Join(r.Zones, ", ")
		}
		fmt.Fprintf(&b, "  events %s: %s from %s in %s\n", strings.Join(r.Events, ", "), r.Channel, r.minName(), zs)
	}
	fmt.Fprintf(&b, "siren signals: %s for any other event", c.ChannelPolicy.Signal(""))
	for _, r := range c.ChannelPolicy.Signals {
		fmt.Fprintf(&b, "; %s for %s", r.Signal, strings.Join(r.Events, ", "))
	}
	b.WriteString("\n")
	return b.String()
}

func (r ChannelRule) minName() string {
	if r.never {
		return "never"
	}
	return r.min.String()
}
