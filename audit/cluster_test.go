package audit_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/mod/sumdb/note"

	"github.com/tocsin-alert/tocsin/audit"
	"github.com/tocsin-alert/tocsin/internal/testenv"
)

// On a real three-master Redis Cluster: appends, the keeper's lock, archive
// and trim (every audit key carries {audit}: one slot), and the chain
// verifies against the checkpoint it signed.
func TestOnRedisCluster(t *testing.T) {
	ctx := context.Background()
	c := testenv.RedisCluster(t, 3)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rdb.Close()
	keys := audit.KeysFor("tc")
	for i := range 20 {
		if _, err := audit.Append(ctx, rdb, keys, audit.Entry{Time: time.Now(), Kind: "test", Actor: "system", Subject: string(rune('a' + i))}); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	signer, verifier, _ := note.GenerateKey(rand.Reader, "cluster")
	dir := t.TempDir()
	k, err := audit.NewKeeper(audit.KeeperOptions{Rdb: rdb, Keys: keys, Dir: dir, Signer: signer, Every: 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Step(ctx); err != nil {
		t.Fatalf("Step: %v", err)
	}
	if n, _ := rdb.LLen(ctx, keys.Log).Result(); n != 0 {
		t.Fatalf("%d lines left in Redis after the keeper's round", n)
	}
	cp, err := os.ReadFile(filepath.Join(dir, "latest.checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(dir, nil, string(cp), verifier)
	if err != nil || rep.VerifiedTo != 20 {
		t.Fatalf("Verify = %+v, %v; want verified to 20", rep, err)
	}
}
