package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a Redis master with two replicas, watched by one Sentinel
// (quorum 1) that fails over a second after the master stops answering:
// with one replica promoted, the other still confirms writes.
type Sentinel struct {
	Master, Sentinel *Server
	Replicas         []*Server
	// Name is the master's name at the Sentinel (redis.master_name).
	Name string
}

// RedisSentinel starts a master (AOF, appendfsync always, as deployed), a
// two replicas of it and a Sentinel, and waits until the Sentinel sees both.
func RedisSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{Name: "tocsin", Master: Redis(t)}
	for range 2 {
		s.Replicas = append(s.Replicas, launch(t, "redis-server", "redis-server", func(dir string, port int) []string {
			return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--daemonize", "no",
				"--protected-mode", "no", "--appendonly", "yes", "--appendfsync", "always", "--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port)}
		}))
	}
	s.Sentinel = launch(t, "redis-server", "redis-server", func(dir string, port int) []string {
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", port))
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\n"+
			"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\n", port, dir, s.Name, s.Master.Port, s.Name, s.Name)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		return []string{conf, "--sentinel"}
	})
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr()})
	defer sc.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		rs, err := sc.Replicas(ctx, s.Name).Result()
		cancel()
		if err == nil && len(rs) == 2 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: the Sentinel did not see both replicas within 15s: %v %v", rs, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// MasterAddr asks the Sentinel which address is the master now.
func (s *Sentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr()})
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	a, err := sc.GetMasterAddrByName(ctx, s.Name).Result()
	if err != nil || len(a) != 2 {
		t.Fatalf("sentinel: master of %s: %v %v", s.Name, a, err)
	}
	return a[0] + ":" + a[1]
}
