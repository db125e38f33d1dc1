package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/internal/testenv"
)

// A gateway on TLS everywhere: its API serves HTTPS, it reaches a Redis
// that speaks only TLS and a broker that takes only mqtts://, both asking
// for its client certificate — ready means both answered. Plain HTTP gets
// nothing, and a renewed certificate is served without a restart.
func TestServeTLS(t *testing.T) {
	certs := testenv.TLSCerts(t)
	rds, broker := testenv.RedisTLS(t, certs), testenv.MosquittoTLS(t, certs)
	t.Setenv("T_TLS_KEY", "tls-test-dispatch-key-0001")
	files := fmt.Sprintf("{ca_file: %q, cert_file: %q, key_file: %q}", certs.CA, certs.Cert, certs.Key)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`listen: 127.0.0.1:0
tls: {cert_file: %q, key_file: %q}
redis: {addrs: [%q], tls: %s}
mqtt: {broker: "mqtts://%s", client_id: tocsin-tls-test, tls: %s}
zones: [{id: town}]
sirens: [{id: s1, zone: town}]
principals: [{id: leitstelle, kind: dispatch, key_env: T_TLS_KEY, scopes: {zones: ["*"]}}]
console: {listen: "off"}
`, certs.Cert, certs.Key, rds.Addr(), files, broker.Addr(), files)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- runGateway(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t)), func(api, _ string) { addrs <- api }, true)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runGateway: %v", err)
		}
	})
	var api string
	select {
	case api = <-addrs:
	case err := <-done:
		t.Fatalf("runGateway: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the gateway did not start within 20s")
	}
	ca, _ := os.ReadFile(certs.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tc := &tls.Config{RootCAs: pool}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := client.Get("https://" + api + "/readyz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET https://%s/readyz never 200 (Redis and broker over TLS): %v", api, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	req, _ := http.NewRequest("POST", "https://"+api+"/v1/alerts", strings.NewReader(`{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","zones":["town"]}`))
	req.Header.Set("Authorization", "Bearer tls-test-dispatch-key-0001")
	req.Header.Set("Content-Type", "application/json")
	if r, err := client.Do(req); err != nil || r.StatusCode != 202 {
		t.Fatalf("POST over HTTPS: %v %v; want 202 (stored in Redis over TLS)", r, err)
	}
	if r, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + api + "/readyz"); err == nil && r.StatusCode == 200 {
		t.Fatal("plain HTTP answered 200 on the TLS listener")
	}
	serial := func() int64 {
		c, err := tls.Dial("tcp", api, tc)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(); s != 2 {
		t.Fatalf("serial %d; want 2", s)
	}
	time.Sleep(1100 * time.Millisecond) // a new modification time, and the once-a-second check due
	certs.Renew(t, 3)
	deadline = time.Now().Add(5 * time.Second)
	for serial() != 3 {
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate was not served within 5s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
