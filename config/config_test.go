package config_test

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tocsin-alert/tocsin/config"
)

var keyHash = hex.EncodeToString(config.HashKey("a-long-enough-api-key"))

func TestParseValid(t *testing.T) {
	t.Setenv("TOCSIN_OP_KEY", "operator-key-long-enough")
	c, err := config.Parse([]byte(`
zones: [{id: school}]
sirens: [{id: s1, zone: school, drills: true}]
principals:
  - {id: leitstelle, kind: dispatch, key_sha256: ` + keyHash + `, scopes: {zones: ["*"], max_severity: Extreme}}
  - {id: op, kind: operator, key_env: TOCSIN_OP_KEY, scopes: {zones: [school], retract: true}}
queue: {lease: 2s}
`))
	if err != nil {
		t.Fatalf("Parse = %v", err)
	}
	if c.Queue.Lease.String() != "2s" || c.Queue.DedupWindow.String() != "5m0s" || c.Listen != "127.0.0.1:8080" {
		t.Fatalf("Parse = %+v; want lease 2s and defaults filled", c.Queue)
	}
	if got := hex.EncodeToString(c.Principals[1].KeyHash()); got != hex.EncodeToString(config.HashKey("operator-key-long-enough")) {
		t.Fatalf("key_env not resolved: %s", got)
	}
}

func TestEnvOverrides(t *testing.T) {
	t.Setenv("TOCSIN_REDIS_ADDRS", "10.0.0.1:6379,10.0.0.2:6379")
	t.Setenv("TOCSIN_LISTEN", ":9999")
	t.Setenv("TOCSIN_INSECURE_PLAINTEXT", "true")
	c, err := config.Parse([]byte("zones: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Redis.Addrs) != 2 || c.Listen != ":9999" || !c.InsecurePlaintext {
		t.Fatalf("overrides not applied: %v %v %v", c.Redis.Addrs, c.Listen, c.InsecurePlaintext)
	}
}

// Nothing leaves loopback in clear unless insecure_plaintext says the
// network is trusted: the API and console listeners need tls, Redis
// redis.tls, the broker mqtts://. Every such problem is named at once.
func TestPlaintextOnlyOnLoopback(t *testing.T) {
	plain := "listen: 0.0.0.0:8080\nconsole: {listen: \"[::]:8081\"}\nredis: {addrs: [redis.internal:6379, 127.0.0.1:6380]}\nmqtt: {broker: tcp://broker.internal:1883}\nzones: []\n" +
		"pa: {controllers: [{id: p1, url: \"http://pa.internal/cmd\"}]}\n"
	_, err := config.Parse([]byte(plain))
	for _, want := range []string{
		"listen: 0.0.0.0:8080 is not a loopback address and has no TLS: set tls",
		"console.listen: [::]:8081 is not a loopback address",
		"redis.addrs[0]: redis.internal:6379 is not a loopback address and has no TLS: set redis.tls",
		"mqtt.broker: broker.internal:1883 is not a loopback address and has no TLS: use mqtts://",
		"pa.controllers[0].url: pa.internal is not a loopback address and has no TLS: use https://",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse: %v; want %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "redis.addrs[1]") {
		t.Errorf("Parse: %v; 127.0.0.1 is loopback", err)
	}
	if _, err := config.Parse([]byte("insecure_plaintext: true\n" + plain)); err != nil {
		t.Errorf("with insecure_plaintext: %v", err)
	}
	for _, ok := range []string{"listen: localhost:8080\n", "listen: \"[::1]:8080\"\n", "mqtt: {broker: \"mqtts://broker.example:8883\"}\n"} {
		if _, err := config.Parse([]byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	_, err = config.Parse([]byte("tls: {cert_file: /nonexistent/api.pem, key_file: /nonexistent/api.key}\nredis: {tls: {ca_file: /nonexistent/ca.pem}}\nmqtt: {broker: tcp://127.0.0.1:1883, tls: {ca_file: /nonexistent/ca.pem}}\n"))
	for _, want := range []string{"tls: open /nonexistent/api.pem", "redis.tls: open /nonexistent/ca.pem", "mqtt.tls: needs an mqtts:// broker"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse: %v; want %q", err, want)
		}
	}
	// A client certificate without its key is named, not dropped.
	_, err = config.Parse([]byte("mqtt: {broker: \"mqtts://127.0.0.1:8883\", tls: {cert_file: /etc/tocsin/client.pem}}\n"))
	for _, want := range []string{"mqtt.tls: cert_file and key_file go together"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse: %v; want %q", err, want)
		}
	}
}

// Every problem comes with its line and field; all problems are reported at once.
func TestProblemsNameLineAndField(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // "line N: field: fragment"
	}{
		{"unknown key", "zones: []\nsirenz: []\n", []string{"line 2: sirenz: unknown field"}},
		{"bad type", "queue:\n  lease: soon\n", []string{"line 2:"}},
		{"syntax", "zones: [\n", []string{"(file)"}},
		{"siren in unknown zone", "zones: [{id: a}]\nsirens:\n  - {id: s1, zone: b}\n", []string{"line 3: sirens[0].zone: zone \"b\" is not defined"}},
		{"duplicate siren and bad id", "zones: [{id: a}]\nsirens:\n  - {id: s1, zone: a}\n  - {id: s1, zone: a}\n  - {id: 'bad id', zone: a}\n",
			[]string{"line 4: sirens[1].id: siren \"s1\" is defined twice", "line 5: sirens[2].id: must be"}},
		{"principal without key", "zones: []\nprincipals:\n  - id: p\n    kind: dispatch\n", []string{"principals[0].key_sha256: set exactly one"}},
		{"plain key is not a hash", "principals:\n  - id: p\n    kind: dispatch\n    key_sha256: secret\n", []string{"line 4: principals[0].key_sha256: must be 64 hex digits"}},
		{"missing env key", "principals:\n  - {id: p, kind: dispatch, key_env: TOCSIN_NOPE_NOT_SET}\n", []string{"line 2: principals[0].key_env: environment variable TOCSIN_NOPE_NOT_SET"}},
		{"bad kind and scopes", "zones: [{id: a}]\nprincipals:\n  - id: p\n    kind: robot\n    key_sha256: " + keyHash + "\n    scopes:\n      zones: [x]\n      channels: [fax]\n      max_severity: Huge\n      statuses: [real]\n",
			[]string{"line 4: principals[0].kind", "line 7: principals[0].scopes.zones[0]", "line 8: principals[0].scopes.channels[0]", "line 9: principals[0].scopes.max_severity", "line 10: principals[0].scopes.statuses[0]"}},
		{"shared key", "principals:\n  - {id: a, kind: dispatch, key_sha256: " + keyHash + "}\n  - {id: b, kind: dispatch, key_sha256: " + keyHash + "}\n", []string{"line 3: principals[1].key_sha256: same API key as principal \"a\""}},
		{"lease out of range", "queue:\n  lease: 10m\n", []string{"line 2: queue.lease: must be between"}},
		{"PA zone with unknown controller and bad language", "zones: [{id: a}]\npa:\n  controllers:\n    - {id: c1, url: 'ftp://x'}\n  zones:\n    - {id: hall, zone: a, controller: c9, language: fr}\n",
			[]string{"line 4: pa.controllers[0].url: must be an http(s) URL", "line 6: pa.zones[0].controller: controller \"c9\" is not defined", "line 6: pa.zones[0].language: no exercise, alert, false_alarm, all_clear, superseded text in \"fr\" for pa"}},
		{"metrics token not set", "zones: [{id: a}]\nmetrics_token_env: TOCSIN_TEST_NO_SUCH_TOKEN\n",
			[]string{"line 2: metrics_token_env: environment variable TOCSIN_TEST_NO_SUCH_TOKEN must hold the token"}},
		{"dispatch centre without key, sender or zones", "zones: [{id: a}]\ndispatch:\n  centres:\n    - id: ils\n      url: https://ils.example/cap\n      zones: [b]\n",
			[]string{"dispatch.sender: required", "line 6: dispatch.centres[0].zones[0]: zone \"b\"", "line 4: dispatch.centres[0].hmac_key_env: required", "line 2: dispatch.signing: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.yaml))
			wantProblems(t, err, tt.want)
		})
	}
}

// wantProblems checks that err is exactly the problems want: one line
// containing each.
func wantProblems(t *testing.T, err error, want []string) {
	t.Helper()
	var ps config.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Parse = %v, want Problems", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Parse error\n%s\nwant a line containing %q", err, w)
		}
	}
	if len(ps) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(ps), len(want), err)
	}
}

func TestKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key")
	os.WriteFile(p, []byte("a-file-key-long-enough\n"), 0o600)
	c, err := config.Parse([]byte("principals:\n  - {id: a, kind: building, key_file: " + p + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(c.Principals[0].KeyHash()) != hex.EncodeToString(config.HashKey("a-file-key-long-enough")) {
		t.Fatal("key_file not resolved (trailing newline must be trimmed)")
	}
}

// The shipped example config must stay valid.
func TestExampleConfigIsValid(t *testing.T) {
	exampleEnv(t)
	if _, err := config.Parse(exampleConfig(t)); err != nil {
		t.Fatalf("deploy/tocsin.example.yaml: %v", err)
	}
}

// A contact group's people can come from a CSV file; its rows are checked like
// people in the YAML file, and a bad row names the file, its line and column.
func TestPeopleFile(t *testing.T) {
	t.Setenv("TW_TOKEN", "token")
	dir := t.TempDir()
	good := filepath.Join(dir, "staff.csv")
	os.WriteFile(good, []byte("id,phone,language,channels\nanna,+49 170 1111111,en,sms\nbernd,0049 170 2222222,,sms voice\n"), 0o600)
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("phone,id\n+49 170 1111111,anna\n12345,bernd\n+49 170 3333333,anna\n"), 0o600)
	noID := filepath.Join(dir, "noid.csv")
	os.WriteFile(noID, []byte("name,phone\nx,+49 170 1111111\n"), 0o600)
	base := "public_url: https://tocsin.example\nzones: [{id: town}]\ntwilio: {primary: t, accounts: [{id: t, account_sid: AC0123456789abcdef0123456789abcdef, auth_token_env: TW_TOKEN, sms: {from: '+4930100'}}]}\ncontacts:\n"
	c, err := config.Parse([]byte(base + "  - {id: staff, zone: town, people: [{id: chef, phone: '+49 170 9999999'}], people_file: " + good + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := &c.Contacts[0].Members
	if m.Len() != 3 || m.At(0).ID != "chef" || m.At(0).Phone != "+491709999999" {
		t.Fatalf("members: %d, first %+v", m.Len(), m.At(0))
	}
	if p, ok := m.Find("anna"); !ok || p.Language != "en" || len(p.Channels) != 1 || !p.Reaches("sms") || p.Reaches("voice") {
		t.Fatalf("Find(anna) = %+v, %v", p, ok)
	}
	if p, ok := m.Find("bernd"); !ok || p.Phone != "+491702222222" || p.Language != "de" || !p.Reaches("sms") || !p.Reaches("voice") {
		t.Fatalf("Find(bernd) = %+v, %v", p, ok)
	}
	if _, ok := m.Find("zoe"); ok || !m.UniquePhones() {
		t.Fatalf("Find(zoe) found someone, or phones not unique")
	}
	for file, want := range map[string][]string{
		bad:                        {"line 5: contacts[0].people_file: " + bad + " line 3, phone: must be an international number", bad + " line 4, id: must be a unique id"},
		noID:                       {"contacts[0].people_file: " + noID + `: header row "name,phone" has no "id" column`},
		filepath.Join(dir, "none"): {"contacts[0].people_file: open "},
	} {
		_, err := config.Parse([]byte(base + "  - {id: staff, zone: town, people_file: " + file + "}\n"))
		for _, w := range want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("people_file %s: Parse error\n%v\nwant %q", filepath.Base(file), err, w)
			}
		}
	}
}
