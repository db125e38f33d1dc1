package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/tocsin-alert/tocsin/alert"
)

// Text is one prepared text that replaces Tocsin's default: the retraction
// notice for a reason, or the prefix of alerts and drills, in one language,
// for every channel kind or one.
type Text struct {
	// Key is exercise, alert, false_alarm, all_clear or superseded.
	Key string `yaml:"key" json:"key"`
	// Language is a base language code ("de", "pl").
	Language string `yaml:"language" json:"language"`
	// Kind, if set, limits the text to one channel kind (sms, voice, pa).
	Kind alert.Kind `yaml:"kind" json:"kind"`
	// Text may contain {headline} and {time}.
	Text string `yaml:"text" json:"text"`
}

// Texts are the texts messages are written with: the configured ones over
// the defaults, in the configured time zone. Built by Load.
func (c *Config) Texts() *alert.Texts { return c.texts }

var (
	languageCode = regexp.MustCompile(`^[a-z]{2,3}$`)
	placeholder  = regexp.MustCompile(`\{[^}]*\}`)
)

func (c *Config) validateTexts(v *validator) {
	c.texts = &alert.Texts{Location: c.Location()}
	seen := map[string]bool{}
	for i, t := range c.TextsConf {
		f := fmt.Sprintf("texts[%d]", i)
		ok := true
		if !slices.Contains(alert.TextKeys, t.Key) {
			v.add(f+".key", fmt.Sprintf("%q is not one of %s", t.Key, strings.Join(alert.TextKeys, ", ")))
			ok = false
		}
		if !languageCode.MatchString(t.Language) {
			v.add(f+".language", "must be a lower-case base language code such as de, en or pl")
			ok = false
		}
		switch t.Kind {
		case "", alert.KindSMS, alert.KindVoice, alert.KindPA, alert.KindDispatch:
		default:
			v.add(f+".kind", "must be sms, voice, pa or dispatch (or empty for every kind)")
			ok = false
		}
		if strings.TrimSpace(t.Text) == "" || len(t.Text) > 1000 {
			v.add(f+".text", "required, at most 1000 characters")
			ok = false
		}
		for _, p := range placeholder.FindAllString(t.Text, -1) {
			if !slices.Contains(alert.Placeholders, p) {
				v.add(f+".text", fmt.Sprintf("unknown placeholder %s; use %s", p, strings.Join(alert.Placeholders, " and ")))
				ok = false
			}
		}
		id := t.Key + "|" + t.Language + "|" + string(t.Kind)
		if seen[id] {
			v.add(f, fmt.Sprintf("a second %s text for %s", t.Key, t.Language))
			ok = false
		}
		seen[id] = true
		if ok {
			c.texts.Set(t.Key, t.Language, t.Kind, t.Text)
		}
	}
}

// textsMissing says which texts a recipient in lang reached on kinds lacks,
// or "" when it has them all.
func (c *Config) textsMissing(lang string, kinds ...alert.Kind) string {
	base, _, _ := strings.Cut(strings.ToLower(lang), "-")
	for _, k := range kinds {
		if m := c.texts.Has(base, k); len(m) > 0 {
			return fmt.Sprintf("no %s text in %q for %s (configure them under texts; languages with every text: %s)",
				strings.Join(m, ", "), lang, k, strings.Join(c.texts.Languages(), ", "))
		}
	}
	return ""
}
