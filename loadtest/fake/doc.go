// Package fake holds the fakes of the outside world that tests, the demo and
// the load generator use: a simulated siren fleet, the Twilio REST API, PA
// controllers and dispatch centres. They talk to Tocsin only through its
// public HTTP and MQTT interfaces, as a real device or service would.
package fake

import (
	"fmt"
	"net"
	"sync"
)

// listenLoopback listens on addr (a free loopback port when empty). The fakes
// refuse any other interface: they answer like Twilio or a dispatch centre,
// and must never be mistaken for one from outside this machine.
func listenLoopback(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("listen address %q: fakes listen on loopback only (127.0.0.1, ::1, localhost)", addr)
	}
	return net.Listen("tcp", addr)
}

// release closes ch, which requests told to hang wait on, once: mu guards it.
func release(mu *sync.Mutex, ch chan struct{}) {
	mu.Lock()
	defer mu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// values copies what ps point to, so callers hold no pointer into a fake.
func values[T any](ps []*T) []T {
	out := make([]T, len(ps))
	for i, p := range ps {
		out[i] = *p
	}
	return out
}
