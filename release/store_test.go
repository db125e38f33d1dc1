package release_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/audit"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/release"
)

// The store on a single Redis and on a real three-master Redis Cluster:
// create, a change decided on what is stored, a lost race, the audit entry
// of each change in the same script (one slot with the audit's keys).
func TestStore(t *testing.T) {
	single := testenv.Redis(t, true)
	cluster := testenv.RedisCluster(t, 3)
	for name, rdb := range map[string]redis.UniversalClient{
		"single":  redis.NewClient(&redis.Options{Addr: single.Addr()}),
		"cluster": redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs()}),
	} {
		t.Run(name, func(t *testing.T) {
			defer rdb.Close()
			ctx := context.Background()
			st := release.NewStore(rdb, "tocsin")
			now := time.Now()
			d := &release.Draft{ID: "d1", State: release.StateDraft, Author: "anna", Editor: "anna", Created: now, Updated: now,
				Package: release.Package{Status: alert.StatusActual, Event: "Amok", Severity: "Extreme", Zones: []string{"school"}}}
			entry := audit.Entry{Time: now, Kind: "draft.created", Actor: "operator:anna", Subject: "d1"}
			if err := st.Put(ctx, d, 0, entry); err != nil {
				t.Fatalf("Put: %v", err)
			}
			if err := st.Put(ctx, d, 0, entry); !errors.Is(err, release.ErrConflict) {
				t.Fatalf("Put twice = %v, want ErrConflict", err)
			}
			got, err := st.Change(ctx, "d1", func(d *release.Draft) (audit.Entry, error) {
				d.State = release.StatePending
				return audit.Entry{Time: now, Kind: "draft.submitted", Actor: "operator:anna", Subject: "d1"}, nil
			})
			if err != nil || got.State != release.StatePending {
				t.Fatalf("Change = %+v, %v", got, err)
			}
			if _, rev, err := st.Get(ctx, "d1"); err != nil || rev != 2 {
				t.Fatalf("Get: rev %d, %v", rev, err)
			}
			ds, err := st.List(ctx, 10)
			if err != nil || len(ds) != 1 || ds[0].Digest == "" {
				t.Fatalf("List = %+v, %v", ds, err)
			}
			k := audit.KeysFor("tocsin")
			lines, err := rdb.LRange(ctx, k.Log, 0, -1).Result()
			if err != nil || len(lines) != 2 {
				t.Fatalf("audit lines %v, %v; want the two changes", lines, err)
			}
		})
	}
}
