package testenv

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster started for a test.
type Cluster struct {
	// Masters and Replicas are the cluster's servers, each with its own
	// directory. Which server redis-cli makes a master is its choice: find
	// a slot's master with the client (ClusterClient.MasterForKey) and its
	// server with Server.
	Masters  []*Server
	Replicas []*Server
}

// Addrs are the servers' addresses, for a cluster client's seed list.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, s := range append(append([]*Server{}, c.Masters...), c.Replicas...) {
		a = append(a, s.Addr())
	}
	return a
}

// Server is the cluster's server at addr ("127.0.0.1:port"), or nil.
func (c *Cluster) Server(addr string) *Server {
	for _, s := range append(append([]*Server{}, c.Masters...), c.Replicas...) {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// RedisCluster starts a Redis Cluster of n (at least 3) masters on free
// loopback ports, without persistence, and waits until it serves.
func RedisCluster(t testing.TB, n int) *Cluster {
	return redisCluster(t, max(n, 3), false)
}

// RedisClusterReplicated starts a Redis Cluster of three masters, each with
// one replica, with AOF (appendfsync always) so a killed server keeps what
// it acknowledged; a killed master's replica takes over within a few
// seconds (cluster-node-timeout 2s).
func RedisClusterReplicated(t testing.TB) *Cluster {
	return redisCluster(t, 3, true)
}

func redisCluster(t testing.TB, n int, replicas bool) *Cluster {
	t.Helper()
	c := &Cluster{}
	count := n
	if replicas {
		count = 2 * n
	}
	var all []*Server
	for range count {
		all = append(all, launch(t, "redis-server", "redis-server", func(dir string, port int) []string {
			aof := []string{"--appendonly", "no"}
			if replicas {
				aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
			}
			return append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
				"--save", "", "--daemonize", "no", "--protected-mode", "no",
				"--cluster-enabled", "yes", "--cluster-config-file", "nodes-" + strconv.Itoa(port) + ".conf",
				"--cluster-node-timeout", "2000"}, aof...)
		}))
	}
	c.Masters = all[:n]
	if replicas {
		c.Replicas = all[n:]
	}
	cli, err := binary("redis-cli", "redis-tools")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(len(c.Replicas)/n), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range all {
		for {
			out, _ := exec.Command(cli, "-p", strconv.Itoa(s.Port), "cluster", "info").Output()
			info := string(out)
			// Every node sees the cluster ok, and (with replicas) every master has its replica.
			if strings.Contains(info, "cluster_state:ok") && strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", count)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testenv: cluster not ok after 30s on %s:\n%s", s.Addr(), out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if replicas {
		// A replica that has not finished its first sync cannot take over.
		for _, s := range c.Replicas {
			for {
				out, _ := exec.Command(cli, "-p", strconv.Itoa(s.Port), "info", "replication").Output()
				if strings.Contains(string(out), "master_link_status:up") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("testenv: replica %s not in sync after 30s:\n%s", s.Addr(), out)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	return c
}

// String names the cluster in test logs.
func (c *Cluster) String() string { return fmt.Sprintf("redis cluster %v", c.Addrs()) }
