// Package testenv starts real redis-server and mosquitto processes on free
// loopback ports in a temporary directory, for tests that need them and for
// chaos tests that kill and restart them. A missing binary is installed from
// Debian's packages when running as root; otherwise the test fails with a
// message that says how to get it. Nothing here ever skips a test.
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

var installMu sync.Mutex

// binary finds name on PATH or in the sbin folders, installing pkg with apt-get
// if it is missing and we are root.
func binary(name, pkg string) (string, error) {
	look := func() (string, error) {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
			p := filepath.Join(dir, name)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
		return "", fmt.Errorf("%s not found", name)
	}
	if p, err := look(); err == nil {
		return p, nil
	}
	installMu.Lock()
	defer installMu.Unlock()
	if p, err := look(); err == nil {
		return p, nil
	}
	how := fmt.Sprintf("%s is needed by the tests and is not installed; install it with: sudo apt-get install -y %s (or run `make deps`)", name, pkg)
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%s", how)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", pkg}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("%s\napt-get %v failed: %v\n%s", how, args, err, out)
		}
	}
	return look()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Server is one child process listening on a loopback port.
type Server struct {
	t    testing.TB
	name string
	bin  string
	args []string
	Dir  string
	Port int

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.Dir
	log, err := os.OpenFile(filepath.Join(s.Dir, s.name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", s.name, err)
	}
	s.cmd = cmd
	go func() { cmd.Wait(); log.Close() }() // exits when the process does
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", s.Addr(), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(s.Dir, s.name+".log"))
	return fmt.Errorf("%s did not listen on %s within 10s; its log:\n%s", s.name, s.Addr(), b)
}

// Kill ends the server with SIGKILL, as a crash would, and waits until its port is closed.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	for i := 0; i < 200; i++ {
		c, err := net.DialTimeout("tcp", s.Addr(), 50*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
}

// Restart starts the server again on the same port and directory.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("restart %s: %v", s.name, err)
	}
}

func launch(t testing.TB, name, pkg string, args func(dir string, port int) []string) *Server {
	t.Helper()
	bin, err := binary(name, pkg)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	dir := t.TempDir()
	var last error
	for range 3 { // a free port can be taken between FreePort and the bind
		port := FreePort(t)
		s := &Server{t: t, name: name, bin: bin, args: args(dir, port), Dir: dir, Port: port}
		if last = s.start(); last == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("testenv: %v", last)
	return nil
}

// Redis starts a redis-server configured like production (AOF with
// appendfsync always) unless fast is set, which turns persistence off.
func Redis(t testing.TB, fast ...bool) *Server {
	t.Helper()
	return launch(t, "redis-server", "redis-server", func(dir string, port int) []string {
		a := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--daemonize", "no", "--protected-mode", "no"}
		if len(fast) > 0 && fast[0] {
			return append(a, "--appendonly", "no")
		}
		return append(a, "--appendonly", "yes", "--appendfsync", "always")
	})
}

// Mosquitto starts a mosquitto broker with set_tcp_nodelay (see DESIGN.md).
func Mosquitto(t testing.TB) *Server {
	t.Helper()
	return launch(t, "mosquitto", "mosquitto", func(dir string, port int) []string {
		conf := filepath.Join(dir, fmt.Sprintf("mosquitto-%d.conf", port))
		body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"+
			"persistence true\npersistence_location %s/\nmax_queued_messages 100000\nuser %s\n", port, dir, currentUser())
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		return []string{"-c", conf}
	})
}

// MosquittoConf starts a mosquitto broker with the configuration conf
// returns for its port and directory (a deployed configuration, rewritten
// to listen on loopback and keep its files in dir).
func MosquittoConf(t testing.TB, conf func(port int, dir string) string) *Server {
	t.Helper()
	return launch(t, "mosquitto", "mosquitto", func(dir string, port int) []string {
		f := filepath.Join(dir, fmt.Sprintf("mosquitto-%d.conf", port))
		if err := os.WriteFile(f, []byte(conf(port, dir)+"\nuser "+currentUser()+"\n"), 0o644); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		return []string{"-c", f}
	})
}

// MQTTURL is the broker URL of a mosquitto Server.
func MQTTURL(s *Server) string { return "tcp://" + s.Addr() }

// currentUser keeps mosquitto from dropping to its own user when run as root,
// which could not write to the test's temporary directory.
func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if os.Geteuid() == 0 {
		return "root"
	}
	return "mosquitto"
}

// MosquittoPub is the path of Debian's mosquitto_pub, installing
// mosquitto-clients when missing; a test that needs it fails with how to get it.
func MosquittoPub(t testing.TB) string {
	t.Helper()
	p, err := binary("mosquitto_pub", "mosquitto-clients")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// MosquittoPasswd adds user with password to a mosquitto password file
// (creating it), as an administrator would with mosquitto_passwd -b.
func MosquittoPasswd(t testing.TB, file, user, password string) {
	t.Helper()
	bin, err := binary("mosquitto_passwd", "mosquitto")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	args := []string{"-b", file, user, password}
	if _, err := os.Stat(file); err != nil {
		args = append([]string{"-c"}, args...)
	}
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd %s: %v\n%s", user, err, out)
	}
}
