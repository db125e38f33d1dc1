package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// StackOptions describe the gateway a fan-out scenario starts for itself:
// `tocsin serve` processes (so it can kill one), a configuration with
// generated recipients, and the fake Twilio and a siren fleet in this process,
// against a Redis and an MQTT broker on this machine.
type StackOptions struct {
	// Binary is the tocsin binary (this executable by default).
	Binary string
	// Redis is the loopback host:port of the Redis to use; the stack writes
	// under its own key prefix and removes it afterwards.
	Redis string
	// Broker is the loopback MQTT broker (tcp://127.0.0.1:1883).
	Broker string
	// Recipients is how many people (SMS only) zone "town" has.
	Recipients int
	// Sirens in zone "town" (4).
	Sirens int
	// Instances is how many gateways with workers run (1); with APIOnly one
	// more takes the alerts and delivers nothing.
	Instances int
	APIOnly   bool
	// Workers per channel kind and instance (16), targets per job (100), lease (2s).
	Workers, BatchSize int
	Lease              time.Duration
	// MemoryLimit, if set, is the gateways' GOMEMLIMIT (the soft heap limit
	// deploy/ ships), not this process's.
	MemoryLimit string
	// Log, if set, gets the gateways' logs (warnings and above).
	Log io.Writer
}

// Stack is a running set of gateway instances with their fakes.
type Stack struct {
	o      StackOptions
	dir    string
	prefix string
	rdb    redis.UniversalClient
	// Key is the dispatch principal's API key; TriggerKey the trigger source's.
	Key, TriggerKey string
	Twilio          *fake.Twilio
	Fleet           *fake.Fleet
	procs           []*proc
	urls            []string
	arrive          *Arrivals
}

// proc is one gateway process; exited is closed when it has ended.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

const (
	stackSID   = "AC00000000000000000000000000000001"
	stackToken = "loadtesttoken"
	// TriggerSource is the building system the stack's config trusts.
	TriggerSource = "plant-button"
)

// StartStack writes the configuration, starts the fakes and the instances
// (workers first, the API-only one last) and waits until each is ready.
func StartStack(ctx context.Context, o StackOptions) (*Stack, error) {
	addrs := strings.Split(o.Redis, ",")
	for _, a := range addrs {
		if err := loopbackOnly("redis://" + a); err != nil {
			return nil, err
		}
	}
	if err := loopbackOnly(o.Broker); err != nil {
		return nil, err
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.Binary = exe
	}
	if !o.APIOnly {
		o.Instances = max(o.Instances, 1)
	}
	o.Sirens = cmp0(o.Sirens, 4)
	o.Workers = cmp0(o.Workers, 16)
	o.BatchSize = cmp0(o.BatchSize, 100)
	if o.Lease == 0 {
		o.Lease = 2 * time.Second
	}
	dir, err := os.MkdirTemp("", "tocsin-loadtest-")
	if err != nil {
		return nil, err
	}
	s := &Stack{o: o, dir: dir, prefix: fmt.Sprintf("lt%x", time.Now().UnixNano()),
		rdb: redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs}), Key: "loadtest-dispatch-key-0001", TriggerKey: "loadtest-button-key-0001",
		arrive: newArrivals(o.Recipients)}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		s.Close()
		return nil, fmt.Errorf("redis %s: %w", o.Redis, err)
	}
	s.Twilio, err = fake.StartTwilio(fake.TwilioOptions{Accounts: map[string]string{stackSID: stackToken}, NoCallbacks: true,
		OnMessage: s.arrive.message})
	if err != nil {
		s.Close()
		return nil, err
	}
	var sirens []string
	for i := range o.Sirens {
		sirens = append(sirens, fmt.Sprintf("town-%d", i+1))
	}
	sirens = append(sirens, "plant-1")
	s.Fleet, err = fake.StartFleet(fake.FleetOptions{Broker: o.Broker, TopicPrefix: s.prefix, IDs: sirens})
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.writePeople(); err != nil {
		s.Close()
		return nil, err
	}
	debug.FreeOSMemory() // writing a million rows left garbage; collect it before anything is timed
	if o.APIOnly {
		if _, err := s.Start(ctx, true); err != nil {
			s.Close()
			return nil, err
		}
	}
	for range o.Instances {
		if _, err := s.Start(ctx, false); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func cmp0(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Phone is recipient i's number; Recipient reads it back (-1 if not one).
func Phone(i int) string { return fmt.Sprintf("+49301%07d", i) }

func recipient(phone string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(phone, "+49301"))
	if err != nil || len(phone) != 13 {
		return -1
	}
	return n
}

func (s *Stack) writePeople() error {
	f, err := os.Create(filepath.Join(s.dir, "people.csv"))
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	fmt.Fprintln(w, "id,phone,channels")
	for i := range s.o.Recipients {
		fmt.Fprintf(w, "p%07d,%s,sms\n", i, Phone(i))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (s *Stack) config(i int, port int) string {
	var sirens strings.Builder
	for j := range s.o.Sirens {
		fmt.Fprintf(&sirens, "  - {id: town-%d, zone: town}\n", j+1)
	}
	contacts := ""
	if s.o.Recipients > 0 {
		contacts = "contacts:\n  - {id: town, zone: town, people_file: " + filepath.Join(s.dir, "people.csv") + "}\n"
	}
	return fmt.Sprintf(`listen: 127.0.0.1:%d
public_url: http://127.0.0.1:%d
redis: {addrs: [%s], key_prefix: %s}
mqtt: {broker: %q, client_id: %s-%d, topic_prefix: %s}
queue: {workers: %d, batch_size: %d, lease: %s, dedup_window: 1ms, shutdown_grace: 2s}
siren: {ack_timeout: 2s}
zones: [{id: town}, {id: plant}]
sirens:
%s  - {id: plant-1, zone: plant}
principals:
  - {id: ils, kind: dispatch, key_env: LOADTEST_KEY, scopes: {zones: ["*"], retract: true}}
triggers:
  sources:
    - {id: %s, key_env: LOADTEST_TRIGGER_KEY, zones: [plant]}
  templates:
    - {trigger: button, event: Alarm, severity: Extreme, urgency: Immediate, channels: [siren]}
twilio:
  primary: fake
  accounts:
    - {id: fake, account_sid: %s, auth_token_env: LOADTEST_TWILIO_TOKEN, base_url: %q, sms: {from: "+4930100000", rate: 10000}}
%s`, port, port, strings.Join(quoted(strings.Split(s.o.Redis, ",")), ", "), s.prefix, s.o.Broker, s.prefix, i, s.prefix, s.o.Workers, s.o.BatchSize, s.o.Lease,
		sirens.String(), TriggerSource, stackSID, s.Twilio.URL, contacts)
}

// Start runs one more instance, API-only or with workers, waits for its
// /readyz and returns its number.
func (s *Stack) Start(ctx context.Context, apiOnly bool) (int, error) {
	i := len(s.procs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	path := filepath.Join(s.dir, fmt.Sprintf("tocsin-%d.yaml", i))
	if err := os.WriteFile(path, []byte(s.config(i, port)), 0o600); err != nil {
		return 0, err
	}
	args := []string{"serve", "--config", path, "--log-level", "warn"}
	if apiOnly {
		args = append(args, "--no-workers")
	}
	cmd := exec.Command(s.o.Binary, args...)
	cmd.Env = os.Environ()
	if s.o.MemoryLimit != "" {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+s.o.MemoryLimit)
	}
	cmd.Env = append(cmd.Env, "LOADTEST_KEY="+s.Key, "LOADTEST_TRIGGER_KEY="+s.TriggerKey, "LOADTEST_TWILIO_TOKEN="+stackToken)
	cmd.Stdout, cmd.Stderr = s.o.Log, s.o.Log
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", s.o.Binary, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }() // exits with the process
	s.procs = append(s.procs, p)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	s.urls = append(s.urls, url)
	deadline := time.Now().Add(60 * time.Second) // a million-person file takes a few seconds to load
	for time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-p.exited:
			return 0, fmt.Errorf("gateway %d exited: %v (run with --logs to see why)", i, cmd.ProcessState)
		default:
		}
		if r, err := http.Get(url + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return i, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("gateway %d (%s) not ready within 60s", i, url)
}

// URL is where alerts go: the first instance (the API-only one, if any).
func (s *Stack) URL() string { return s.urls[0] }

// Prefix is the stack's MQTT topic prefix (and Redis key prefix).
func (s *Stack) Prefix() string { return s.prefix }

// Kill ends instance i with SIGKILL, as a crash would.
func (s *Stack) Kill(i int) error {
	if err := s.procs[i].cmd.Process.Kill(); err != nil {
		return err
	}
	<-s.procs[i].exited
	return nil
}

// Stop ends instance i with SIGTERM and waits for it (its running jobs are
// handed back to the queue).
func (s *Stack) Stop(i int) {
	p := s.procs[i]
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// PeakRSS is instance i's peak resident memory in bytes (VmHWM), 0 if unknown.
func (s *Stack) PeakRSS(i int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.procs[i].cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// RedisMemory is Redis's used_memory in bytes (every master's, on a cluster).
func (s *Stack) RedisMemory(ctx context.Context) (int64, error) {
	var total atomic.Int64
	err := s.eachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		info, err := c.InfoMap(ctx, "memory").Result()
		if err != nil {
			return err
		}
		n, err := strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
		total.Add(n)
		return err
	})
	return total.Load(), err
}

// eachMaster runs fn on the Redis, or on every master of a cluster.
func (s *Stack) eachMaster(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("redis client %T", s.rdb)
}

func quoted(ss []string) []string {
	out := make([]string, len(ss))
	for i, v := range ss {
		out[i] = strconv.Quote(v)
	}
	return out
}

// Close stops the instances (SIGTERM), the fakes, and removes the stack's keys.
func (s *Stack) Close() {
	var wg sync.WaitGroup
	for i := range s.procs {
		wg.Add(1)
		go func() { // exits when the process has
			defer wg.Done()
			s.Stop(i)
		}()
	}
	wg.Wait()
	if s.Fleet != nil {
		s.Fleet.Close()
	}
	if s.Twilio != nil {
		s.Twilio.Close()
	}
	ctx := context.Background()
	s.eachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, s.prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Unlink(ctx, iter.Val()) // one by one: a cluster's keys are in many slots
		}
		return nil
	})
	s.rdb.Close()
	os.RemoveAll(s.dir)
}
