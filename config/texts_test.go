package config_test

import (
	"strings"
	"testing"

	"github.com/tocsin-alert/tocsin/config"
)

// Prepared texts: each configured text is checked, and every recipient's
// language must have every text (retraction notices included) on the
// channels that reach them — a Polish speaker needs Polish texts configured.
func TestTexts(t *testing.T) {
	t.Setenv("TW_TOKEN", "token")
	base := "public_url: https://tocsin.example\nzones: [{id: town}]\ntwilio: {primary: t, accounts: [{id: t, account_sid: AC0123456789abcdef0123456789abcdef, auth_token_env: TW_TOKEN, sms: {from: '+4930100'}}]}\n" +
		"contacts:\n  - {id: staff, zone: town, people: [{id: ola, phone: '+48 600 111 222', language: pl, channels: [sms]}]}\n"
	pl := "texts:\n"
	for _, k := range []string{"exercise", "alert", "false_alarm", "all_clear", "superseded"} {
		pl += "  - {key: " + k + ", language: pl, text: 'PL " + k + " {headline} {time}'}\n"
	}
	for _, tt := range []struct {
		name, yml, field, msg string
	}{
		{"Polish speaker, no Polish texts", base, "contacts[0].people[0].language", "no exercise, alert, false_alarm, all_clear, superseded text"},
		{"Polish texts configured", base + pl, "", ""},
		{"Polish texts but one", base + strings.Replace(pl, "key: superseded", "key: superseded, kind: voice", 1), "contacts[0].people[0].language", "no superseded text"},
		{"unknown key", base + pl + "  - {key: bye, language: pl, text: x}\n", "texts[5].key", "not one of"},
		{"unknown placeholder", base + pl + "  - {key: alert, language: en, text: 'WARN {event}'}\n", "texts[5].text", "unknown placeholder {event}"},
		{"bad kind", base + pl + "  - {key: alert, language: en, kind: siren, text: x}\n", "texts[5].kind", "sms, voice, pa or dispatch"},
		{"twice", base + pl + "  - {key: alert, language: pl, text: x}\n", "texts[5]", "a second alert text"},
	} {
		c, err := config.Parse([]byte(tt.yml))
		if tt.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			} else if got := c.Texts().Languages(); !strings.Contains(strings.Join(got, ","), "pl") {
				t.Errorf("%s: languages %v, want pl among them", tt.name, got)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.field+": ") || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: error %v; want %s: %s", tt.name, err, tt.field, tt.msg)
		}
	}
}
