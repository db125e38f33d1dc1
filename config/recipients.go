package config

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/tocsin-alert/tocsin/alert"
)

// ContactGroup is a set of people in a zone who are told by SMS and voice call:
// a school's staff, a town hall's crisis team.
type ContactGroup struct {
	ID     string   `yaml:"id"`
	Zone   string   `yaml:"zone"`
	People []Person `yaml:"people"`
	// Members are all the group's people, from People and PeopleFile, as
	// validated; routing and look-ups use them.
	Members Members `yaml:"-"`
	// PeopleFile names a CSV file of further people (a staff list, a
	// municipality's opt-in register): a header row naming the columns id,
	// phone and optionally language and channels (sms, voice, or both
	// separated by a space), then one person per row.
	PeopleFile string `yaml:"people_file"`
	// Drills says the group takes test and exercise alerts.
	Drills bool `yaml:"drills"`
}

// Person is one recipient. Their target id is "group.person", so ledgers and
// logs never carry the phone number.
type Person struct {
	ID    string `yaml:"id"`
	Phone string `yaml:"phone"`
	// Language is the person's preferred language ("de", "en"; default "de").
	Language string `yaml:"language"`
	// Channels the person is reached by: sms, voice (default: both).
	Channels []alert.Kind `yaml:"channels"`
}

// Reaches reports whether the person is reached by channel kind k.
func (p Person) Reaches(k alert.Kind) bool {
	return len(p.Channels) == 0 || slices.Contains(p.Channels, k)
}

// Twilio configures the Twilio accounts SMS and voice calls go through.
type Twilio struct {
	// Primary is the account used normally; Fallback, if set, is used while
	// the primary's breaker is open.
	Primary  string          `yaml:"primary"`
	Fallback string          `yaml:"fallback"`
	Accounts []TwilioAccount `yaml:"accounts"`
}

// TwilioAccount is one Twilio account with its SMS and voice senders.
type TwilioAccount struct {
	ID         string `yaml:"id"`
	AccountSID string `yaml:"account_sid"`
	// AuthTokenEnv names the environment variable holding the auth token.
	AuthTokenEnv string `yaml:"auth_token_env"`
	token        string
	// BaseURL points the client at another host than api.twilio.com (the fake
	// in loadtest/; never in production).
	BaseURL string      `yaml:"base_url"`
	SMS     TwilioSMS   `yaml:"sms"`
	Voice   TwilioVoice `yaml:"voice"`
}

// TwilioSMS is an account's SMS sender.
type TwilioSMS struct {
	// From is the sender number; or MessagingServiceSID a sender pool.
	From                string `yaml:"from"`
	MessagingServiceSID string `yaml:"messaging_service_sid"`
	// Rate is messages per second this sender may send (long code 1, toll-free 3, short code 100).
	Rate float64 `yaml:"rate"`
}

// TwilioVoice is an account's voice caller.
type TwilioVoice struct {
	From string  `yaml:"from"`
	Rate float64 `yaml:"rate"` // calls per second
	// Voice is the TwiML <Say> voice ("alice", "Polly.Vicki", …); Repeat how
	// many times the message is spoken.
	Voice  string `yaml:"voice"`
	Repeat int    `yaml:"repeat"`
}

// Account returns the account with id, or nil.
func (t *Twilio) Account(id string) *TwilioAccount {
	return find(t.Accounts, func(a *TwilioAccount) bool { return a.ID == id })
}

// find returns the first element of xs that match accepts, or nil.
func find[T any](xs []T, match func(*T) bool) *T {
	for i := range xs {
		if match(&xs[i]) {
			return &xs[i]
		}
	}
	return nil
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// NormalizePhone turns a written phone number into E.164: spaces, dashes,
// dots and brackets go, a leading 00 becomes +. National numbers are refused:
// without a country code a number is ambiguous.
func NormalizePhone(s string) (string, error) {
	s = strings.Map(func(r rune) rune {
		if strings.ContainsRune(" -./()\u00a0", r) {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	if strings.HasPrefix(s, "00") {
		s = "+" + s[2:]
	}
	if !e164.MatchString(s) {
		return "", fmt.Errorf("must be an international number such as +49 170 1234567")
	}
	return s, nil
}

func (c *Config) validateRecipients(v *validator, zones map[string]bool) {
	if c.Twilio.Primary != "" || len(c.Twilio.Accounts) > 0 {
		if c.PublicURL == "" {
			v.add("public_url", "required with twilio: the URL Twilio posts status callbacks to")
		}
		ids := map[string]bool{}
		for i := range c.Twilio.Accounts {
			a := &c.Twilio.Accounts[i]
			f := fmt.Sprintf("twilio.accounts[%d]", i)
			if !validID(a.ID) || ids[a.ID] {
				v.add(f+".id", "must be a unique id of letters, digits, '-', '_' or '.'")
			}
			ids[a.ID] = true
			if !strings.HasPrefix(a.AccountSID, "AC") || len(a.AccountSID) != 34 {
				v.add(f+".account_sid", "must be a Twilio account SID (AC and 32 hex digits)")
			}
			if a.AuthTokenEnv == "" {
				v.add(f+".auth_token_env", "required: the environment variable holding the auth token")
			}
			if a.SMS.From == "" && a.SMS.MessagingServiceSID == "" && a.Voice.From == "" {
				v.add(f, "needs sms.from, sms.messaging_service_sid or voice.from")
			}
			if a.SMS.From != "" {
				if n, err := NormalizePhone(a.SMS.From); err != nil {
					v.add(f+".sms.from", err.Error())
				} else {
					a.SMS.From = n
				}
			}
			if a.Voice.From != "" {
				if n, err := NormalizePhone(a.Voice.From); err != nil {
					v.add(f+".voice.from", err.Error())
				} else {
					a.Voice.From = n
				}
			}
			if a.SMS.Rate == 0 {
				a.SMS.Rate = 1
			}
			if a.Voice.Rate == 0 {
				a.Voice.Rate = 1
			}
			if a.SMS.Rate < 0 || a.SMS.Rate > 10000 {
				v.add(f+".sms.rate", "must be between 0 and 10000 messages/s")
			}
			if a.Voice.Rate < 0 || a.Voice.Rate > 100 {
				v.add(f+".voice.rate", "must be between 0 and 100 calls/s")
			}
			if a.Voice.Voice == "" {
				a.Voice.Voice = "alice"
			}
			if a.Voice.Repeat == 0 {
				a.Voice.Repeat = 2
			}
		}
		if c.Twilio.Account(c.Twilio.Primary) == nil {
			v.add("twilio.primary", fmt.Sprintf("account %q is not defined under twilio.accounts", c.Twilio.Primary))
		}
		if c.Twilio.Fallback != "" && (c.Twilio.Account(c.Twilio.Fallback) == nil || c.Twilio.Fallback == c.Twilio.Primary) {
			v.add("twilio.fallback", fmt.Sprintf("account %q must be another account defined under twilio.accounts", c.Twilio.Fallback))
		}
	}
	groups := map[string]bool{}
	for i := range c.Contacts {
		g := &c.Contacts[i]
		f := fmt.Sprintf("contacts[%d]", i)
		if !validID(g.ID) || groups[g.ID] {
			v.add(f+".id", "must be a unique id of letters, digits, '-' or '_'")
		}
		groups[g.ID] = true
		if !zones[g.Zone] {
			v.add(f+".zone", fmt.Sprintf("zone %q is not defined under zones", g.Zone))
		}
		inline := len(g.People)
		// bad names the field of person j, in the YAML file or in the CSV file.
		bad := func(j int, field, msg string) {
			if j < inline {
				v.add(fmt.Sprintf("%s.people[%d].%s", f, j, field), msg)
			} else {
				v.add(f+".people_file", fmt.Sprintf("%s line %d, %s: %s", g.PeopleFile, j-inline+2, field, msg))
			}
		}
		languages := map[string]string{} // language and kinds -> what is missing
		var mb membersBuilder
		var src []int32 // the j of each stored person, for reporting duplicates
		// check validates person j and, if sound, stores it in the group's Members.
		check := func(j int, p *Person) {
			problems := len(v.ps)
			if !validID(p.ID) || strings.Contains(p.ID, ".") {
				bad(j, "id", "must be a unique id of letters, digits, '-' or '_' within the group")
			}
			n, err := NormalizePhone(p.Phone)
			if err != nil {
				bad(j, "phone", err.Error())
			}
			p.Phone = n
			if p.Language == "" {
				p.Language = "de"
			}
			kinds := p.Channels
			if len(kinds) == 0 {
				kinds = []alert.Kind{alert.KindSMS, alert.KindVoice}
			}
			key := p.Language + fmt.Sprint(kinds)
			missing, checked := languages[key]
			if !checked {
				missing = c.textsMissing(p.Language, kinds...)
				languages[key] = missing
			}
			if missing != "" {
				bad(j, "language", missing)
			}
			for k, ch := range p.Channels {
				if ch != alert.KindSMS && ch != alert.KindVoice {
					bad(j, fmt.Sprintf("channels[%d]", k), "must be sms or voice")
				}
			}
			if len(v.ps) == problems {
				mb.add(*p)
				src = append(src, int32(j))
			}
		}
		for j := range g.People {
			check(j, &g.People[j])
		}
		if g.PeopleFile != "" {
			row := inline
			err := readPeople(g.PeopleFile, mb.grow, func(p Person) {
				check(row, &p)
				row++
			})
			if err != nil {
				v.add(f+".people_file", err.Error())
			}
		}
		// Ids must be unique in the group (checked on the sorted store, not
		// with a map, so a million people need 4 MB to check).
		var dups []int
		g.Members, dups = mb.done()
		for _, d := range dups {
			bad(int(src[d]), "id", "must be a unique id of letters, digits, '-' or '_' within the group")
		}
	}
	if len(c.Contacts) > 0 && c.Twilio.Primary == "" {
		v.add("twilio", "contacts need a twilio account to reach them")
	}
}

// readPeople reads a people_file and hands each row to add, in order: a CSV
// header naming the columns (id, phone, language, channels; any order, the
// last two optional), then one person per row. grow is told roughly how many
// rows follow. Rows are checked by the caller like people in the YAML file.
func readPeople(path string, grow func(int), add func(Person)) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	grow(bytes.Count(b, []byte{'\n'}))
	r := csv.NewReader(bytes.NewReader(b))
	r.TrimLeadingSpace = true
	r.ReuseRecord = true
	head, err := r.Read()
	if err != nil {
		return fmt.Errorf("%s: header row: %v", path, err)
	}
	col := map[string]int{"language": -1, "channels": -1}
	for i, h := range head {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	for _, need := range []string{"id", "phone"} {
		if _, ok := col[need]; !ok {
			return fmt.Errorf("%s: header row %q has no %q column (want id,phone[,language][,channels])", path, strings.Join(head, ","), need)
		}
	}
	channels := map[string][]alert.Kind{}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		p := Person{ID: rec[col["id"]], Phone: rec[col["phone"]]}
		if i := col["language"]; i >= 0 {
			p.Language = rec[i]
		}
		if i := col["channels"]; i >= 0 && rec[i] != "" {
			ks, ok := channels[rec[i]]
			if !ok {
				for _, ch := range strings.Fields(rec[i]) {
					ks = append(ks, alert.Kind(ch))
				}
				channels[rec[i]] = ks
			}
			p.Channels = ks
		}
		add(p)
	}
}
