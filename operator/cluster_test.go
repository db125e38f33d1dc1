package operator_test

import (
	"context"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/audit"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/operator"
)

// On a real three-master Redis Cluster every operator script touches one
// slot (its keys and the audit's carry {audit}): invite, enrol, sign in,
// step up, sign out — each with its audit entry.
func TestOnRedisCluster(t *testing.T) {
	ctx := context.Background()
	c := testenv.RedisCluster(t, 3)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rdb.Close()
	clk := &clock{t: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	st := operator.New(rdb, prefix, operator.Options{Now: clk.Now, Known: func(id string) (string, bool) { return id, id == "anna" }})
	code := func(secret string) string {
		c, err := totp.GenerateCode(secret, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	inv, err := st.Invite(ctx, "anna", "admin-cli")
	if err != nil {
		t.Fatalf("Invite: %v", err)
	}
	key, err := st.BeginEnrol(ctx, inv, "anna-long-password")
	if err != nil {
		t.Fatalf("BeginEnrol: %v", err)
	}
	if err := st.FinishEnrol(ctx, inv, code(key.Secret())); err != nil {
		t.Fatalf("FinishEnrol: %v", err)
	}
	clk.Add(30 * time.Second)
	tok, _, err := st.SignIn(ctx, "anna", "anna-long-password", code(key.Secret()))
	if err != nil {
		t.Fatalf("SignIn: %v", err)
	}
	clk.Add(30 * time.Second)
	if err := st.StepUp(ctx, tok, code(key.Secret())); err != nil {
		t.Fatalf("StepUp: %v", err)
	}
	if _, err := st.Session(ctx, tok); err != nil {
		t.Fatalf("Session: %v", err)
	}
	if err := st.SignOut(ctx, tok); err != nil {
		t.Fatalf("SignOut: %v", err)
	}
	lines, err := rdb.LRange(ctx, audit.KeysFor(prefix).Log, 0, -1).Result()
	if err != nil || len(lines) < 5 {
		t.Fatalf("audit on the cluster: %d lines, %v", len(lines), err)
	}
}
