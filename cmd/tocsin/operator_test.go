package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/internal/testenv"
)

// tocsin operator invite, list, disable and enable against a real Redis.
func TestOperatorCLI(t *testing.T) {
	ctx := context.Background()
	addr := testenv.Redis(t, true).Addr()
	path := filepath.Join(t.TempDir(), "tocsin.yaml")
	os.WriteFile(path, []byte("insecure_plaintext: true\nlisten: 0.0.0.0:9090\nredis: {addrs: ['"+addr+"'], key_prefix: cli}\n"+
		"zones: [{id: town}]\nsirens: [{id: s1, zone: town}]\noperators:\n"+
		"  - {id: alice, name: Alice Adler, roles: [admin, approver], zones: ['*']}\n"+
		"  - {id: bob, name: Bob Berg, roles: [viewer], zones: [town]}\n"), 0o600)
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := operatorRun(args, &out)
		return out.String(), err
	}

	out, err := run("invite", "alice", "--config", path)
	if err != nil {
		t.Fatalf("operator invite: %v", err)
	}
	m := regexp.MustCompile(`(?m)^http://localhost:9090/v1/enrol#(tsi_[A-Za-z0-9_-]{43})$`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "Alice Adler") || !strings.Contains(out, time.Now().Add(24*time.Hour).UTC().Format("2006-01-02")) {
		t.Fatalf("operator invite printed:\n%s", out)
	}
	// The link enrols alice.
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	st := operatorStore(cfg, rdb, time.Now)
	key, err := st.BeginEnrol(ctx, m[1], "a long enough password")
	if err != nil {
		t.Fatalf("BeginEnrol with the printed token: %v", err)
	}
	code, _ := totp.GenerateCode(key.Secret(), time.Now())
	if err := st.FinishEnrol(ctx, m[1], code); err != nil {
		t.Fatalf("FinishEnrol: %v", err)
	}

	out, err = run("list", "--config", path)
	if err != nil {
		t.Fatalf("operator list: %v", err)
	}
	for _, want := range []string{`alice\s+Alice Adler\s+admin,approver\s+active\s+-\s+never`, `bob\s+Bob Berg\s+viewer\s+not enrolled`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("operator list lacks %s:\n%s", want, out)
		}
	}
	// The id may also follow the flags.
	if _, err := run("disable", "--config", path, "alice"); err != nil {
		t.Fatalf("operator disable: %v", err)
	}
	if out, _ = run("list", "--config", path); !regexp.MustCompile(`alice\s+Alice Adler\s+\S+\s+disabled`).MatchString(out) {
		t.Errorf("operator list after disable:\n%s", out)
	}
	if _, err := run("invite", "alice", "--config", path); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("operator invite of a disabled operator = %v", err)
	}
	if _, err := run("enable", "alice", "--config", path); err != nil {
		t.Fatalf("operator enable: %v", err)
	}
	if out, _ = run("list", "--config", path); !regexp.MustCompile(`alice\s+Alice Adler\s+\S+\s+active`).MatchString(out) {
		t.Errorf("operator list after enable:\n%s", out)
	}
	log := strings.Join(rdb.LRange(ctx, "cli:{audit}:log", 0, -1).Val(), "\n")
	for _, want := range []string{`"kind":"operator.invited","actor":"admin-cli","subject":"alice"`,
		`"kind":"operator.disabled","actor":"admin-cli","subject":"alice"`, `"kind":"operator.enabled","actor":"admin-cli","subject":"alice"`} {
		if !strings.Contains(log, want) {
			t.Errorf("audit lacks %s:\n%s", want, log)
		}
	}
	if strings.Contains(log, m[1]) || strings.Contains(log, "tsi_") {
		t.Errorf("audit holds the invite token:\n%s", log)
	}

	for _, bad := range [][]string{{}, {"frobnicate"}, {"invite", "--config", path}, {"list", "alice", "--config", path},
		{"invite", "mallory", "--config", path}, {"disable", "alice", "--config", filepath.Join(t.TempDir(), "none.yaml")}} {
		if _, err := run(bad...); err == nil {
			t.Errorf("operator %q succeeded", bad)
		}
	}
	if err := operatorCmd(nil); err == nil || !strings.Contains(err.Error(), "invite ID") {
		t.Errorf("operatorCmd() = %v; want the usage", err)
	}
}

func TestPublicBase(t *testing.T) {
	for _, c := range []struct{ public, listen, want string }{
		{"https://tocsin.example.org/", "127.0.0.1:8080", "https://tocsin.example.org"},
		{"", "127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"", ":8080", "http://localhost:8080"},
		{"", "[::]:8080", "http://localhost:8080"},
	} {
		if got := publicBase(&config.Config{PublicURL: c.public, Listen: c.listen}); got != c.want {
			t.Errorf("publicBase(%q, %q) = %q; want %q", c.public, c.listen, got, c.want)
		}
	}
}
