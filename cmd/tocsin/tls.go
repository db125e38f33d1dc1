package main

import (
	"crypto/tls"
	stdlog "log"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/config"
)

// certReloader serves a certificate from its files and reads them again
// when they change (a renewal by certbot or a secret mount), checked at most
// once a second: no restart, no dropped alert. A pair that fails to load
// (the key written after the certificate, say) keeps the last good one.
type certReloader struct {
	files config.ServerTLS
	log   zerolog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time
	checked time.Time
}

func newCertReloader(f config.ServerTLS, log zerolog.Logger) (*certReloader, error) {
	r := &certReloader{files: f, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) modTimes() [2]time.Time {
	var st [2]time.Time
	for i, f := range []string{r.files.CertFile, r.files.KeyFile} {
		if fi, err := os.Stat(f); err == nil {
			st[i] = fi.ModTime()
		}
	}
	return st
}

func (r *certReloader) load() error {
	st := r.modTimes()
	c, err := tls.LoadX509KeyPair(r.files.CertFile, r.files.KeyFile)
	if err != nil {
		return err
	}
	r.cert, r.stamp = &c, st
	return nil
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= time.Second {
		r.checked = now
		if r.modTimes() != r.stamp {
			if err := r.load(); err != nil {
				r.log.Error().Err(err).Str("cert_file", r.files.CertFile).Msg("New TLS certificate not loaded; serving the previous one")
			} else {
				r.log.Info().Str("cert_file", r.files.CertFile).Msg("TLS certificate reloaded")
			}
		}
	}
	return r.cert, nil
}

// httpErrorLog sends net/http's own complaints to the log: failed TLS
// handshakes from scanners and plain HTTP on the TLS port at debug level, a
// handler's panic as an error.
func httpErrorLog(log zerolog.Logger) *stdlog.Logger {
	l := log.With().Str("component", "http").Logger()
	return stdlog.New(writerFunc(func(p []byte) (int, error) {
		msg := strings.TrimSpace(string(p))
		if strings.HasPrefix(msg, "http: panic") {
			l.Error().Msg(msg) // a handler's panic, with its stack
		} else {
			l.Debug().Msg(msg)
		}
		return len(p), nil
	}), "", 0)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// listen listens on addr, with TLS when the configuration has a certificate.
func listen(cfg *config.Config, addr string, log zerolog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil || cfg.TLS == nil {
		return ln, err
	}
	r, err := newCertReloader(*cfg.TLS, log)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.getCertificate}), nil
}
