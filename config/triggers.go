package config

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/tocsin-alert/tocsin/alert"
)

// Triggers configures the building systems that trigger alerts over MQTT.
type Triggers struct {
	// Window is how far a trigger's timestamp may be from now (30s); outside
	// it the trigger is refused as stale or replayed.
	Window time.Duration `yaml:"window"`
	// ResetWindow is how long after a trigger the panel's reset of the same
	// event retracts its alert automatically (2m); later, an operator retracts.
	ResetWindow time.Duration `yaml:"reset_window"`
	// Rate and Burst limit each source's triggers (10/s, burst 50: a panel's own burst passes); what is
	// over the limit is dropped and audited as rejected, counted per second.
	Rate      float64           `yaml:"rate"`
	Burst     int               `yaml:"burst"`
	Sources   []TriggerSource   `yaml:"sources"`
	Templates []TriggerTemplate `yaml:"templates"`
}

// TriggerSource is one building system: an alarm button, a fire panel.
type TriggerSource struct {
	ID string `yaml:"id"`
	// KeyEnv names the environment variable with the source's own HMAC key.
	KeyEnv string `yaml:"key_env"`
	// Zones the source may trigger.
	Zones []string `yaml:"zones"`
	// Triggers the source may send (template names); empty is all.
	Triggers []string `yaml:"triggers"`

	key []byte
}

// Key is the source's HMAC key, resolved at load time.
func (s *TriggerSource) Key() []byte { return s.key }

// TriggerTemplate turns a trigger into an alert.
type TriggerTemplate struct {
	// Trigger is the name a source sends ("amok-button").
	Trigger     string       `yaml:"trigger"`
	Event       string       `yaml:"event"`
	Severity    string       `yaml:"severity"`
	Urgency     string       `yaml:"urgency"`
	Headline    string       `yaml:"headline"`
	Description string       `yaml:"description"`
	Instruction string       `yaml:"instruction"`
	Channels    []alert.Kind `yaml:"channels"`
	// Status is actual (default) or test: a source's test button.
	Status alert.Status `yaml:"status"`
}

// Source returns the trigger source with id, or nil.
func (t *Triggers) Source(id string) *TriggerSource {
	return find(t.Sources, func(s *TriggerSource) bool { return s.ID == id })
}

// Template returns the template for trigger, or nil.
func (t *Triggers) Template(trigger string) *TriggerTemplate {
	return find(t.Templates, func(tp *TriggerTemplate) bool { return tp.Trigger == trigger })
}

func (c *Config) validateTriggers(v *validator, zones map[string]bool) {
	t := &c.Triggers
	if t.Window == 0 {
		t.Window = 30 * time.Second
	}
	if t.ResetWindow == 0 {
		t.ResetWindow = 2 * time.Minute
	}
	if t.Rate == 0 {
		t.Rate = 10
	}
	if t.Burst == 0 {
		t.Burst = 50
	}
	if t.Rate < 0.1 || t.Rate > 1000 {
		v.add("triggers.rate", "must be between 0.1 and 1000 triggers/s per source")
	}
	if t.Burst < 1 || t.Burst > 10000 {
		v.add("triggers.burst", "must be between 1 and 10000")
	}
	if t.Window < time.Second || t.Window > 10*time.Minute {
		v.add("triggers.window", "must be between 1s and 10m")
	}
	names := map[string]bool{}
	for i := range t.Templates {
		tp := &t.Templates[i]
		f := fmt.Sprintf("triggers.templates[%d]", i)
		if !validID(tp.Trigger) || tp.Trigger == "reset" || names[tp.Trigger] {
			v.add(f+".trigger", "must be a unique name of letters, digits, '-', '_' or '.' (and not \"reset\")")
		}
		names[tp.Trigger] = true
		if tp.Event == "" {
			v.add(f+".event", "required")
		}
		if _, err := alert.ParseSeverity(tp.Severity); err != nil {
			v.add(f+".severity", err.Error())
		}
		if _, err := alert.ParseUrgency(tp.Urgency); err != nil {
			v.add(f+".urgency", err.Error())
		}
		if tp.Status == "" {
			tp.Status = alert.StatusActual
		}
		if tp.Status != alert.StatusActual && tp.Status != alert.StatusTest {
			v.add(f+".status", "must be actual or test")
		}
		for j, k := range tp.Channels {
			if !slices.Contains(alert.Kinds, k) {
				v.add(fmt.Sprintf("%s.channels[%d]", f, j), fmt.Sprintf("%q is not a channel kind", k))
			}
		}
	}
	ids := map[string]bool{}
	for i := range t.Sources {
		s := &t.Sources[i]
		f := fmt.Sprintf("triggers.sources[%d]", i)
		if !validID(s.ID) || ids[s.ID] {
			v.add(f+".id", "must be a unique id of letters, digits, '-', '_' or '.'")
		}
		ids[s.ID] = true
		if s.KeyEnv == "" {
			v.add(f+".key_env", "required: the environment variable with the source's HMAC key")
		} else if s.key = []byte(os.Getenv(s.KeyEnv)); len(s.key) < 16 {
			v.add(f+".key_env", fmt.Sprintf("environment variable %s must hold the source's key (16 characters or more)", s.KeyEnv))
		}
		if len(s.Zones) == 0 {
			v.add(f+".zones", "required: the zones the source may trigger")
		}
		for j, z := range s.Zones {
			if !zones[z] {
				v.add(fmt.Sprintf("%s.zones[%d]", f, j), fmt.Sprintf("zone %q is not defined under zones", z))
			}
		}
		for j, tr := range s.Triggers {
			if !names[tr] {
				v.add(fmt.Sprintf("%s.triggers[%d]", f, j), fmt.Sprintf("no template for trigger %q", tr))
			}
		}
	}
}
