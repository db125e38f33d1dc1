package testenv

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of masters started for a test.
type Cluster struct {
	// Masters are the cluster's servers, each with its own directory.
	Masters []*Server
}

// Addrs are the masters' addresses, for a cluster client's seed list.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, s := range c.Masters {
		a = append(a, s.Addr())
	}
	return a
}

// RedisCluster starts n (at least 3) redis-server masters with cluster
// mode on, joins them with redis-cli --cluster create, and waits until the
// cluster reports ok. Persistence is off: these tests are about slots.
func RedisCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 3 {
		n = 3
	}
	c := &Cluster{}
	for range n {
		c.Masters = append(c.Masters, launch(t, "redis-server", "redis-server", func(dir string, port int) []string {
			return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
				"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
				"--cluster-enabled", "yes", "--cluster-config-file", "nodes-" + strconv.Itoa(port) + ".conf",
				"--cluster-node-timeout", "2000"}
		}))
	}
	cli, err := binary("redis-cli", "redis-tools")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range c.Masters {
		for {
			out, _ := exec.Command(cli, "-p", strconv.Itoa(s.Port), "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testenv: cluster not ok after 20s on %s:\n%s", s.Addr(), out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c
}

// String names the cluster in test logs.
func (c *Cluster) String() string { return fmt.Sprintf("redis cluster %v", c.Addrs()) }
