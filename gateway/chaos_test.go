package gateway_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/internal/testenv"
)

// Promise 1 and the 503 rule: with Redis gone, POST answers 503 (never 202);
// when Redis is back, the same gateway accepts again without a restart, and
// what was acknowledged before the crash is still there (AOF, appendfsync always).
func TestRedisDownAnswers503ThenRecovers(t *testing.T) {
	s := newStack(t, stackOptions{})
	before := s.post(amok())
	if before.Code != 202 {
		t.Fatalf("POST = %d %s", before.Code, before.Raw)
	}
	s.redis.Kill()
	r := s.post(amok())
	if r.Code != 503 || r.Header.Get("Retry-After") == "" || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("POST with Redis down = %d %v %s; want 503 problem with Retry-After", r.Code, r.Header, r.Raw)
	}
	if r := s.do("GET", "/readyz", "", "", ""); r.Code != 503 || r.Body["detail"] != "redis: not reachable" {
		t.Fatalf("readyz with Redis down = %d %s; want 503 naming redis, without its error text (anyone may ask)", r.Code, r.Raw)
	}
	s.redis.Restart()
	eventually(t, 10*time.Second, "POST accepted again after Redis returned", func() bool { return s.post(amok()).Code == 202 })
	if r := s.get(before.Body["id"].(string)); r.Code != 200 {
		t.Fatalf("alert acknowledged before the crash: GET = %d %s, want it kept", r.Code, r.Raw)
	}
}

// Promise 10: the broker killed with kill -9 while sirens are being alerted
// loses what it held; after it returns, every unexpired command is acked,
// because Tocsin resends until the controller's ack.
func TestBrokerKilledMidAlert(t *testing.T) {
	s := newStack(t, stackOptions{fleetDelay: 400 * time.Millisecond})
	id := s.post(amok("school")).Body["id"].(string)
	eventually(t, 5*time.Second, "commands reached the sirens", func() bool { return len(bySiren(s.fleet.Received(), id)) == 3 })
	s.broker.Kill() // the sirens' acks (400ms later) have nowhere to go
	time.Sleep(time.Second)
	s.broker.Restart()
	defer func() {
		if t.Failed() {
			for _, r := range s.fleet.Received() {
				t.Logf("%s %s %s acked=%v repeat=%v", r.At.Format("05.000"), r.Siren, r.Cmd.Signal, r.Acked, r.Repeat)
			}
			b, _ := os.ReadFile(filepath.Join(s.broker.Dir, "mosquitto.log"))
			t.Logf("broker log:\n%s", b)
		}
	}()
	eventually(t, 20*time.Second, "all 3 sirens acked after the broker came back", func() bool { return s.sirenCounts(id)["delivered"] == float64(3) })
}

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tocsin-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "tocsin")
	out, err := exec.Command("go", "build", "-o", binary, "../cmd/tocsin").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building cmd/tocsin for the process tests: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startProcess runs `tocsin serve` as a child process with the stack's config
// (listen address and client id replaced) and waits until it is ready.
func (s *stack) startProcess(clientID string, extra ...string) (*exec.Cmd, string) {
	t := s.t
	port := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	yml := strings.Replace(s.cfgYML, "listen: 127.0.0.1:0", "listen: "+addr, 1)
	yml = strings.Replace(yml, "client_id: "+s.cfg.MQTT.ClientID, "client_id: "+clientID, 1)
	yml = strings.Replace(yml, "queue: {", "queue: {shutdown_grace: 1s, ", 1)
	path := filepath.Join(t.TempDir(), "tocsin.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, append([]string{"serve", "--config", path, "--log-level", "warn"}, extra...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	eventually(t, 10*time.Second, "the gateway process ready", func() bool {
		r, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	})
	return cmd, "http://" + addr
}

// Promise 6: two gateway instances share Redis; one is killed with kill -9
// mid-alert; the other reclaims its work within seconds and nothing is lost.
func TestInstanceKilledMidAlertOtherFinishes(t *testing.T) {
	offline := sirenIDs("school", 3)
	s := newStack(t, stackOptions{noGateway: true, fleet: true, offline: offline, lease: "1s"})
	proc, url := s.startProcess("tocsin-doomed")
	r := s.postTo(url, amok("school"))
	if r.Code != 202 {
		t.Fatalf("POST to the first instance = %d %s", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	// The first instance is delivering: the sirens hear it but do not ack yet.
	eventually(t, 5*time.Second, "the first instance sending", func() bool { return len(bySiren(s.fleet.Received(), id)) == 3 })
	proc.Process.Kill()
	proc.Wait()
	killed := time.Now()
	for _, sid := range offline {
		s.fleet.SetOffline(sid, false)
	}
	s.startGateway()
	eventually(t, 10*time.Second, "the survivor delivered every siren", func() bool { return s.sirenCounts(id)["delivered"] == float64(3) })
	t.Logf("work of the killed instance finished %v after the kill (lease 1s)", time.Since(killed))
	if d := time.Since(killed); d > 5*time.Second {
		t.Fatalf("reclaim took %v, want ≤ 5s", d)
	}
}

// SIGTERM: readiness fails, running jobs get shutdown_grace to finish, the rest
// are handed back at once (not after a lease), and the process exits 0.
func TestSIGTERMHandsWorkBack(t *testing.T) {
	offline := sirenIDs("school", 3)
	s := newStack(t, stackOptions{noGateway: true, fleet: true, offline: offline, lease: "5s"})
	proc, url := s.startProcess("tocsin-terminated")
	id := s.postTo(url, amok("school")).Body["id"].(string)
	eventually(t, 5*time.Second, "the instance sending", func() bool { return len(bySiren(s.fleet.Received(), id)) == 3 })
	proc.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want 0", err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("no exit within 8s of SIGTERM")
	}
	stopped := time.Now()
	for _, sid := range offline {
		s.fleet.SetOffline(sid, false)
	}
	s.startGateway()
	eventually(t, 10*time.Second, "the next instance delivered every siren", func() bool { return s.sirenCounts(id)["delivered"] == float64(3) })
	if d := time.Since(stopped); d > 4*time.Second {
		t.Fatalf("handed-back work took %v to resume; with a 5s lease it should not wait for expiry", d)
	}
}

func (s *stack) postTo(url, body string) response {
	old := s.url
	defer func() { s.url = old }()
	s.url = url
	return s.post(body)
}

// An API-only instance (serve --no-workers) accepts and stores alerts and
// delivers nothing; an instance with workers on the same Redis delivers them.
func TestAPIOnlyInstance(t *testing.T) {
	s := newStack(t, stackOptions{noGateway: true, fleet: true})
	_, url := s.startProcess("tocsin-api-only", "--no-workers")
	r := s.postTo(url, amok("school"))
	if r.Code != 202 {
		t.Fatalf("POST to the API-only instance = %d %s", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	time.Sleep(500 * time.Millisecond)
	if n := len(s.fleet.Received()); n != 0 {
		t.Fatalf("%d siren commands from an API-only instance; want none", n)
	}
	s.startGateway()
	eventually(t, 5*time.Second, "the worker instance delivered", func() bool { return s.sirenCounts(id)["delivered"] == float64(3) })
}
