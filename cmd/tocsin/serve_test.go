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
	for _, want := range []string{good + ": ok", "de  false_alarm  1 GSM-7", "de  all_clear    2 UCS-2", "en  false_alarm  1 GSM-7"} {
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
