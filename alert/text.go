package alert

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Info is an alert's text in one language: a CAP <info> block, or one entry
// of a JSON alert's info list.
type Info struct {
	Language    string `json:"language"`
	Event       string `json:"event,omitempty"`
	Headline    string `json:"headline,omitempty"`
	Description string `json:"description,omitempty"`
	Instruction string `json:"instruction,omitempty"`
}

// Infos is every language the alert is written in: its own texts (the
// primary language, Alert.Language) first, then Alert.Infos.
func (a *Alert) infos() []Info {
	primary := Info{Language: a.Language, Event: a.Event, Headline: a.Headline, Description: a.Description, Instruction: a.Instruction}
	return append([]Info{primary}, a.Infos...)
}

// InfoFor picks the alert's text for a recipient in lang. The order: the
// same language tag ("de-CH"), then the same base language ("de" for
// "de-CH", or "de-DE" for "de"), then English, then the alert's primary
// language. A block that names no event takes the alert's.
func (a *Alert) InfoFor(lang string) Info {
	all := a.infos()
	base := func(l string) string { b, _, _ := strings.Cut(strings.ToLower(l), "-"); return b }
	pick := func(match func(Info) bool) (Info, bool) {
		i := slices.IndexFunc(all, match)
		if i < 0 {
			return Info{}, false
		}
		in := all[i]
		if in.Event == "" {
			in.Event = a.Event
		}
		return in, true
	}
	for _, m := range []func(Info) bool{
		func(in Info) bool { return lang != "" && strings.EqualFold(in.Language, lang) },
		func(in Info) bool { return lang != "" && base(in.Language) == base(lang) },
		func(in Info) bool { return base(in.Language) == "en" },
	} {
		if in, ok := pick(m); ok {
			return in
		}
	}
	in, _ := pick(func(Info) bool { return true })
	return in
}

// TextKeys are the prepared texts a language needs: the prefix of drill
// messages, the prefix of an alert, and the retraction notice per reason.
var TextKeys = []string{"exercise", "alert", "false_alarm", "all_clear", "superseded"}

// defaultTexts are the texts prepared before they are needed, per
// language. {headline} is the alert's headline (or event), {time} the local
// time it was sent.
var defaultTexts = map[string]map[string]string{
	"de": {
		"exercise":    "ÜBUNG – KEIN ECHTER ALARM. ",
		"alert":       "WARNUNG: {headline}. ",
		"false_alarm": "ENTWARNUNG: Die Warnung „{headline}“ von {time} war ein Fehlalarm. Es besteht keine Gefahr.",
		"all_clear":   "ENTWARNUNG: Die Gefahr aus der Warnung „{headline}“ von {time} ist vorbei.",
		"superseded":  "Die Warnung „{headline}“ von {time} ist aufgehoben und wird ersetzt.",
	},
	"en": {
		"exercise":    "EXERCISE – NOT A REAL ALARM. ",
		"alert":       "WARNING: {headline}. ",
		"false_alarm": "ALL CLEAR: The warning \"{headline}\" of {time} was a false alarm. There is no danger.",
		"all_clear":   "ALL CLEAR: The danger of the warning \"{headline}\" of {time} is over.",
		"superseded":  "The warning \"{headline}\" of {time} is withdrawn and will be replaced.",
	},
}

// Languages are the languages Tocsin has its own texts for.
func Languages() []string { return []string{"de", "en"} }

// TextLanguage picks the language of Tocsin's own default texts for lang:
// lang if there are texts for it (matching "de-DE" to "de"), else English.
func TextLanguage(lang string) string {
	base, _, _ := strings.Cut(strings.ToLower(lang), "-")
	if _, ok := defaultTexts[base]; ok {
		return base
	}
	return "en"
}

// Texts writes what a person is told: the alert in their language, or the
// prepared notice of its retraction. Configured texts (per key, language and
// optionally channel kind) replace the defaults; the zero value uses the
// defaults and UTC. Safe for concurrent use once built.
type Texts struct {
	// Location is the time zone of {time} (nil: UTC).
	Location *time.Location
	// set maps "key|language|kind" (kind "" for every kind) to a template.
	set map[string]string
}

// Set configures the template for key (a TextKeys entry) in language
// (lower-case base language, "de"), for kind ("" for every channel kind).
func (t *Texts) Set(key, language string, kind Kind, template string) {
	if t.set == nil {
		t.set = map[string]string{}
	}
	t.set[key+"|"+strings.ToLower(language)+"|"+string(kind)] = template
}

// template is the template for key in lang on kind, and whether there is
// one: configured for the kind, configured for every kind, or a default.
func (t *Texts) template(key, lang string, kind Kind) (string, bool) {
	base, _, _ := strings.Cut(strings.ToLower(lang), "-")
	if t != nil {
		if s, ok := t.set[key+"|"+base+"|"+string(kind)]; ok && kind != "" {
			return s, true
		}
		if s, ok := t.set[key+"|"+base+"|"]; ok {
			return s, true
		}
	}
	s, ok := defaultTexts[base][key]
	return s, ok
}

// Has reports whether lang has every key's text on kind, configured or default.
func (t *Texts) Has(lang string, kind Kind) (missing []string) {
	for _, k := range TextKeys {
		if _, ok := t.template(k, lang, kind); !ok {
			missing = append(missing, k)
		}
	}
	return missing
}

// Languages are the languages with every text on every kind: the
// defaults' and each configured one that is complete.
func (t *Texts) Languages() []string {
	langs := Languages()
	if t != nil {
		for k := range t.set {
			parts := strings.Split(k, "|")
			if !slices.Contains(langs, parts[1]) && len(t.Has(parts[1], "")) == 0 {
				langs = append(langs, parts[1])
			}
		}
	}
	sort.Strings(langs)
	return langs
}

// Placeholders are what a template may contain.
var Placeholders = []string{"{headline}", "{time}"}

// Fill writes a template for an alert titled headline sent at sent.
func (t *Texts) fill(tmpl, headline string, sent time.Time) string {
	loc := time.UTC
	if t != nil && t.Location != nil {
		loc = t.Location
	}
	return strings.NewReplacer("{headline}", headline, "{time}", sent.In(loc).Format("15:04")).Replace(tmpl)
}

// Text is what a person reached on kind in lang is told about a: the alert
// (headline, description, instruction of the info block for their
// language, InfoFor) or, for a retraction, the prepared notice for its
// reason. Test and exercise alerts say so first, in every language; their
// retractions too. Texts missing in lang (a language configured only in
// part) fall back to English.
func (t *Texts) Text(a *Alert, kind Kind, msg Message, reason, lang string) string {
	get := func(key string) string {
		if s, ok := t.template(key, lang, kind); ok {
			return s
		}
		s, _ := t.template(key, "en", kind)
		return s
	}
	in := a.InfoFor(lang)
	title := in.Headline
	if title == "" {
		title = in.Event
	}
	var b strings.Builder
	if a.Status.IsDrill() {
		b.WriteString(t.fill(get("exercise"), title, a.Sent))
	}
	if msg == MessageRetraction {
		key := reason
		if _, ok := t.template(key, "en", kind); !ok {
			key = "false_alarm"
		}
		tmpl := get(key)
		if own, ok := a.retractionText(key, lang, kind); ok {
			tmpl = own
		}
		b.WriteString(t.fill(tmpl, title, a.Sent))
		return b.String()
	}
	b.WriteString(t.fill(get("alert"), title, a.Sent))
	for _, s := range []string{in.Description, in.Instruction} {
		if s = strings.TrimSpace(s); s != "" {
			b.WriteString(s)
			if !strings.HasSuffix(s, ".") && !strings.HasSuffix(s, "!") {
				b.WriteString(".")
			}
			b.WriteString(" ")
		}
	}
	return strings.TrimSpace(b.String())
}

// Text is (&Texts{Location: loc}).Text with the default texts, for any kind.
func (a *Alert) Text(msg Message, reason, lang string, loc *time.Location) string {
	return (&Texts{Location: loc}).Text(a, "", msg, reason, lang)
}

// TextName names a text in messages: "false_alarm (de, sms)".
func TextName(key, lang string, kind Kind) string {
	if kind == "" {
		return fmt.Sprintf("%s (%s)", key, lang)
	}
	return fmt.Sprintf("%s (%s, %s)", key, lang, kind)
}

// retractionText is the alert's own retraction notice for reason in lang on
// kind: for the kind, else for every kind.
func (a *Alert) retractionText(reason, lang string, kind Kind) (string, bool) {
	m := a.RetractionTexts[reason]
	if m == nil {
		return "", false
	}
	base, _, _ := strings.Cut(strings.ToLower(lang), "-")
	if s, ok := m[base+"/"+string(kind)]; ok {
		return s, true
	}
	s, ok := m[base]
	return s, ok
}
