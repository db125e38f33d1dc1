package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// config check names every problem, and for a good file prints how many SMS
// segments each prepared text takes, configured texts included.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("zones: [{id: town}]\nsirens: [{id: s1, zone: town}]\ntexts:\n"+
		"  - {key: false_alarm, language: de, kind: sms, text: 'FEHLALARM: {headline} von {time}.'}\n"), 0o600)
	var out bytes.Buffer
	if code := configCheck(good, &out); code != 0 {
		t.Fatalf("config check good.yaml = %d:\n%s", code, &out)
	}
	for _, want := range []string{good + ": ok", "de  false_alarm  1 GSM-7", "de  all_clear    2 UCS-2", "en  false_alarm  1 GSM-7",
		"channel policy", "  town                 Severe    Unknown", "siren signals: alarm for any other event"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("config check output lacks %q:\n%s", want, &out)
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("zones: [{id: town}]\ntexts:\n  - {key: bye, language: de, text: x}\n  - {key: alert, language: en, text: '{event}'}\n"), 0o600)
	out.Reset()
	if code := configCheck(bad, &out); code != 1 || !strings.Contains(out.String(), "texts[0].key") || !strings.Contains(out.String(), "texts[1].text") {
		t.Fatalf("config check bad.yaml = %d:\n%s; want 1 naming both texts", code, &out)
	}
}

// config check reads every secret and file the way serve does, and names
// every missing one in one run (so a systemd pre-start check means
// something); serve refuses the same file with the same list.
func TestConfigCheckNamesEverySecret(t *testing.T) {
	for _, v := range []string{"T_REDIS_PW", "T_MQTT_PW", "T_TW", "T_PA", "T_ILS"} {
		t.Setenv(v, "")
	}
	t.Setenv("T_ILS", "too-short")
	f := filepath.Join(t.TempDir(), "tocsin.yaml")
	os.WriteFile(f, []byte(`public_url: https://tocsin.example
redis: {password_env: T_REDIS_PW}
mqtt: {password_env: T_MQTT_PW}
zones: [{id: town}]
sirens: [{id: s1, zone: town}]
twilio: {primary: t, accounts: [{id: t, account_sid: AC0123456789abcdef0123456789abcdef, auth_token_env: T_TW, sms: {from: '+4930100'}}]}
pa: {controllers: [{id: p1, url: "https://pa.example/cmd", token_env: T_PA}], zones: [{id: hall, zone: town, controller: p1}]}
dispatch:
  sender: tocsin@example.org
  signing: {cert_file: /nonexistent/tocsin.pem, key_file: /nonexistent/tocsin.key}
  centres: [{id: ils, url: "https://ils.example/cap", hmac_key_env: T_ILS, zones: [town], tls: {ca_file: /nonexistent/ca.pem}}]
`), 0o600)
	want := []string{
		"redis.password_env: environment variable T_REDIS_PW is empty or unset",
		"mqtt.password_env: environment variable T_MQTT_PW is empty or unset",
		"twilio.accounts[0].auth_token_env: environment variable T_TW is empty or unset",
		"pa.controllers[0].token_env: environment variable T_PA is empty or unset",
		"dispatch.centres[0].hmac_key_env: environment variable T_ILS must hold the HMAC key shared with the centre (16 characters or more)",
		"dispatch.centres[0].tls: open /nonexistent/ca.pem",
		"dispatch.signing",
	}
	var out bytes.Buffer
	if code := configCheck(f, &out); code != 1 {
		t.Fatalf("config check = %d:\n%s; want 1", code, &out)
	}
	err := serve([]string{"--config", f})
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("config check lacks %q:\n%s", w, &out)
		}
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("serve: %v; want it refused naming %q", err, w)
		}
	}
}
