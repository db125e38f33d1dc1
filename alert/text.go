package alert

import (
	"fmt"
	"strings"
	"time"
)

// Languages are the languages Tocsin has written texts for. Add one by adding
// its entry to texts.
func Languages() []string { return []string{"de", "en"} }

// texts are the messages prepared before they are needed: the alert itself,
// and its retraction per reason, for each language. %[1]s is the headline (or
// event), %[2]s the local time the alert was sent.
var texts = map[string]map[string]string{
	"de": {
		"exercise":    "ÜBUNG – KEIN ECHTER ALARM. ",
		"alert":       "WARNUNG: %[1]s. ",
		"false_alarm": "ENTWARNUNG: Die Warnung „%[1]s“ von %[2]s war ein Fehlalarm. Es besteht keine Gefahr.",
		"all_clear":   "ENTWARNUNG: Die Gefahr aus der Warnung „%[1]s“ von %[2]s ist vorbei.",
		"superseded":  "Die Warnung „%[1]s“ von %[2]s ist aufgehoben und wird ersetzt.",
	},
	"en": {
		"exercise":    "EXERCISE – NOT A REAL ALARM. ",
		"alert":       "WARNING: %[1]s. ",
		"false_alarm": "ALL CLEAR: The warning \"%[1]s\" of %[2]s was a false alarm. There is no danger.",
		"all_clear":   "ALL CLEAR: The danger of the warning \"%[1]s\" of %[2]s is over.",
		"superseded":  "The warning \"%[1]s\" of %[2]s is withdrawn and will be replaced.",
	},
}

// TextLanguage picks the language to write in: lang if Tocsin has texts for
// it (matching "de-DE" to "de"), else English.
func TextLanguage(lang string) string {
	base, _, _ := strings.Cut(strings.ToLower(lang), "-")
	if _, ok := texts[base]; ok {
		return base
	}
	return "en"
}

// Text is what a person is told about an alert in lang: the alert (headline,
// description, instruction) or, for a retraction, the prepared text for its
// reason. Test and exercise alerts say so first, in every language; their
// retractions too. loc is the time zone for the sent time (nil: UTC).
func (a *Alert) Text(msg Message, reason, lang string, loc *time.Location) string {
	t := texts[TextLanguage(lang)]
	var b strings.Builder
	if a.Status.IsDrill() {
		b.WriteString(t["exercise"])
	}
	title := a.Headline
	if title == "" {
		title = a.Event
	}
	if msg == MessageRetraction {
		if loc == nil {
			loc = time.UTC
		}
		f, ok := t[reason]
		if !ok {
			f = t["false_alarm"]
		}
		fmt.Fprintf(&b, f, title, a.Sent.In(loc).Format("15:04"))
		return b.String()
	}
	fmt.Fprintf(&b, t["alert"], title)
	for _, s := range []string{a.Description, a.Instruction} {
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
