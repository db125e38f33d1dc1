package routing_test

import (
	"slices"
	"testing"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/routing"
)

// A number is reached once per kind, however many groups (or rows of one
// group) list it; the adapters find each person by target id.
func TestRouteReachesEachPhoneOnce(t *testing.T) {
	t.Setenv("TOCSIN_TEST_TW", "token")
	cfg, err := config.Parse([]byte(`
public_url: http://127.0.0.1:1
zones: [{id: school}, {id: hall}]
twilio: {primary: m, accounts: [{id: m, account_sid: AC00000000000000000000000000000001, auth_token_env: TOCSIN_TEST_TW, sms: {from: '+4930100000'}}]}
contacts:
  - {id: staff, zone: school, people: [{id: anna, phone: '+49 170 1000001', language: en}, {id: bob, phone: '+49 170 1000002', channels: [sms]}, {id: anna2, phone: '+491701000001', channels: [sms]}]}
  - {id: crisis, zone: hall, people: [{id: bob, phone: '+49 170 1000002', channels: [sms]}, {id: carl, phone: '+49 170 1000003', channels: [voice]}]}
  - {id: night, zone: hall, people: [{id: dora, phone: '+49 170 1000004'}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	g := routing.New(cfg)
	keys := func(zones ...string) []string {
		var out []string
		for _, tg := range g.Route(&alert.Alert{Status: alert.StatusActual, Zones: zones, Channels: []alert.Kind{alert.KindSMS, alert.KindVoice}}) {
			out = append(out, tg.Key())
		}
		return out
	}
	for _, tt := range []struct {
		zones []string
		want  []string
	}{
		{[]string{"school"}, []string{"sms/staff.anna", "voice/staff.anna", "sms/staff.bob"}}, // anna2 shares anna's number
		{[]string{"hall"}, []string{"sms/crisis.bob", "voice/crisis.carl", "sms/night.dora", "voice/night.dora"}},
		{[]string{"school", "hall"}, []string{"sms/staff.anna", "voice/staff.anna", "sms/staff.bob", "voice/crisis.carl", "sms/night.dora", "voice/night.dora"}},
	} {
		if got := keys(tt.zones...); !slices.Equal(got, tt.want) {
			t.Errorf("route(%v) = %v, want %v", tt.zones, got, tt.want)
		}
	}
	if r, ok := g.Recipient("staff.anna"); !ok || r.Phone != "+491701000001" || r.Language != "en" {
		t.Errorf("Recipient(staff.anna) = %+v, %v", r, ok)
	}
	if r, ok := g.Recipient("crisis.carl"); !ok || r.Phone != "+491701000003" || r.Language != "de" {
		t.Errorf("Recipient(crisis.carl) = %+v, %v", r, ok)
	}
	for _, id := range []string{"staff.zoe", "nogroup.anna", "staff", ""} {
		if _, ok := g.Recipient(id); ok {
			t.Errorf("Recipient(%q) found someone", id)
		}
	}
}
