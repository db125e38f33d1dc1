package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/audit"
	"github.com/tocsin-alert/tocsin/internal/testenv"
)

// runAudit runs tocsin audit ARGS and returns what it printed.
func runAudit(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	old := auditOut
	auditOut = &out
	defer func() { auditOut = old }()
	err := auditCmd(args)
	return out.String(), err
}

func TestAuditKeygenVerify(t *testing.T) {
	out, err := runAudit(t, "keygen", "tocsin-prod")
	if err != nil {
		t.Fatal(err)
	}
	var skey, vkey string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "signer key:   "); ok {
			skey = v
		}
		if v, ok := strings.CutPrefix(l, "verifier key: "); ok {
			vkey = v
		}
	}
	if !strings.HasPrefix(skey, "PRIVATE+KEY+tocsin-prod+") || !strings.HasPrefix(vkey, "tocsin-prod+") || !strings.Contains(out, "TOCSIN_AUDIT_SIGNER_KEY") {
		t.Fatalf("keygen printed:\n%s", out)
	}

	srv := testenv.Redis(t, true)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	keys := audit.KeysFor("acme")
	dir := t.TempDir()
	k, err := audit.NewKeeper(audit.KeeperOptions{Rdb: rdb, Keys: keys, Dir: dir, Signer: skey, Every: 5,
		Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	appendN := func(n int) {
		for i := range n {
			if _, err := audit.Append(ctx, rdb, keys, audit.Entry{Time: time.Now(), Kind: "signin.ok", Actor: fmt.Sprintf("operator:%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(6)
	if err := k.Step(ctx); err != nil {
		t.Fatal(err)
	}
	appendN(3)

	verify := []string{"verify", "--dir", dir, "--key", vkey, "--redis", srv.Addr(), "--prefix", "acme"}
	out, err = runAudit(t, verify...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "audit: chain verified to entry 6, checkpoint signed at ") ||
		!strings.Contains(out, " by tocsin-prod; 3 entries after it not yet checkpointed") {
		t.Fatalf("verify printed:\n%s", out)
	}

	// A checkpoint kept off the host, as syslog has it.
	latest, _ := os.ReadFile(filepath.Join(dir, "latest.checkpoint"))
	logFile := filepath.Join(t.TempDir(), "auth.log")
	os.WriteFile(logFile, []byte("Dec  2 10:00:00 gw1 tocsin-audit[42]: checkpoint seq=6 hash=x time=y signer=tocsin-prod note="+
		base64.StdEncoding.EncodeToString(latest)+"\nDec  2 10:00:01 gw1 sshd[1]: unrelated\n"), 0o600)
	if out, err := runAudit(t, append(verify, "--checkpoint", logFile)...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	// Without the Redis tail the archive alone still verifies.
	if out, err := runAudit(t, "verify", "--dir", dir, "--key", vkey); err != nil || !strings.Contains(out, "0 entries after it") {
		t.Fatalf("%v\n%s", err, out)
	}

	// Entry 3 changed in the archive.
	seg := filepath.Join(dir, "audit-000001.log")
	b, _ := os.ReadFile(seg)
	b = bytes.Replace(b, []byte(`"operator:2"`), []byte(`"operator:X"`), 1)
	os.WriteFile(seg, b, 0o640)
	if _, err := runAudit(t, verify...); err == nil || !strings.HasPrefix(err.Error(), "entry 3: ") {
		t.Fatalf("tampered archive: %v", err)
	}

	// The wrong key, and the last entries cut from Redis.
	b = bytes.Replace(b, []byte(`"operator:X"`), []byte(`"operator:2"`), 1)
	os.WriteFile(seg, b, 0o640)
	out2, _ := runAudit(t, "keygen", "tocsin-prod")
	_, wrong, _ := strings.Cut(out2, "verifier key: ")
	if _, err := runAudit(t, "verify", "--dir", dir, "--key", strings.TrimSpace(wrong)); err == nil || !strings.Contains(err.Error(), "unknown key") {
		t.Fatalf("wrong key: %v", err)
	}
	rdb.RPop(ctx, keys.Log)
	if _, err := runAudit(t, verify...); err == nil || !strings.HasPrefix(err.Error(), "entry 9: missing") {
		t.Fatalf("cut Redis tail: %v", err)
	}
	if _, err := runAudit(t, "verify", "--dir", dir); err == nil {
		t.Fatal("verify without a key succeeded")
	}
}

// On Redis Cluster, verify reads the entries not yet archived from the
// master of the audit's slot, whichever server it is given (--cluster);
// without --cluster, a server that does not hold the slot is an error that
// says so.
func TestAuditVerifyOnRedisCluster(t *testing.T) {
	out, err := runAudit(t, "keygen", "tocsin-prod")
	if err != nil {
		t.Fatal(err)
	}
	var skey, vkey string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "signer key:   "); ok {
			skey = v
		}
		if v, ok := strings.CutPrefix(l, "verifier key: "); ok {
			vkey = v
		}
	}
	c := testenv.RedisCluster(t, 3)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rdb.Close()
	ctx := context.Background()
	keys := audit.KeysFor("acme")
	dir := t.TempDir()
	k, err := audit.NewKeeper(audit.KeeperOptions{Rdb: rdb, Keys: keys, Dir: dir, Signer: skey, Every: 5,
		Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 9 {
		if _, err := audit.Append(ctx, rdb, keys, audit.Entry{Time: time.Now(), Kind: "signin.ok", Actor: fmt.Sprintf("operator:%d", i)}); err != nil {
			t.Fatal(err)
		}
		if i == 5 {
			if err := k.Step(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	holder, err := rdb.MasterForKey(ctx, keys.Seq)
	if err != nil {
		t.Fatal(err)
	}
	var other string
	for _, a := range c.Addrs() {
		if a != holder.Options().Addr {
			other = a
		}
	}
	verify := []string{"verify", "--dir", dir, "--key", vkey, "--redis", other, "--prefix", "acme"}
	if _, err := runAudit(t, verify...); err == nil || !strings.Contains(err.Error(), "add --cluster") {
		t.Fatalf("verify against %s, which does not hold the audit's slot, without --cluster: %v", other, err)
	}
	out, err = runAudit(t, append(verify, "--cluster")...)
	if err != nil || !strings.Contains(out, "chain verified to entry 6") || !strings.Contains(out, "3 entries after it not yet checkpointed") {
		t.Fatalf("verify --cluster: %v\n%s", err, out)
	}
}
