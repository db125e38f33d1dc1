// Package console is the control-room web console: server-rendered pages on
// the gateway's own HTTP API. Every page is built from API calls made in
// process with the signed-in person's session token, so the console has no
// door of its own: what the API refuses, the console cannot do, and when the
// console is down the API and the CLI still retract.
//
// The pages work as plain HTML forms; scripts only add live progress (Server-
// Sent Events) and security-key ceremonies. Every answer carries a strict
// Content-Security-Policy with a per-request nonce, no caching and no
// framing; every form carries a CSRF token bound to the session and a
// one-time token against double submission.
package console

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/config"
)

//go:embed templates/*.html static/*
var files embed.FS

// cookieName holds the operator's session token (HttpOnly, SameSite=Strict).
const cookieName = "tocsin_session"

// Options are a console's collaborators.
type Options struct {
	// API is the gateway's HTTP API (gateway.Handler), called in process.
	API http.Handler
	// Config is the gateway's configuration (zones, templates, texts).
	Config *config.Config
	Log    zerolog.Logger
	// Secure marks cookies Secure (the console is served over TLS or
	// behind a TLS proxy).
	Secure bool
}

// Server is the console.
type Server struct {
	api    http.Handler
	cfg    *config.Config
	log    zerolog.Logger
	secure bool
	pages  map[string]*template.Template
	// csrfKey binds CSRF tokens to sessions; a restart invalidates open
	// forms, never a session.
	csrfKey []byte

	onceMu sync.Mutex
	once   map[string]time.Time // one-time form tokens used, until expiry
}

// New builds a console.
func New(o Options) (*Server, error) {
	s := &Server{api: o.API, cfg: o.Config, log: o.Log, secure: o.Secure, pages: map[string]*template.Template{},
		csrfKey: make([]byte, 32), once: map[string]time.Time{}}
	rand.Read(s.csrfKey)
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		page := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if page == "layout" {
			continue
		}
		// Times read in the configuration's zone, as the messages and the
		// demo's timeline give them, not the server's.
		loc := o.Config.Location()
		t, err := template.New("layout.html").Funcs(funcs).Funcs(template.FuncMap{"time": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.In(loc).Format("02.01. 15:04:05")
		}}).ParseFS(files, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: %s: %w", n, err)
		}
		s.pages[page] = t
	}
	return s, nil
}

// Handler serves the console.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(files, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /login", s.page(s.getLogin, false))
	mux.HandleFunc("POST /login", s.postLogin)
	mux.HandleFunc("POST /login/key/options", s.postLoginKeyOptions)
	mux.HandleFunc("POST /login/key", s.postLoginKey)
	mux.HandleFunc("POST /logout", s.form(s.postLogout))
	mux.HandleFunc("GET /keys", s.page(s.getKeys, true))
	mux.HandleFunc("POST /keys/options", s.postKeyOptions)
	mux.HandleFunc("POST /keys", s.postKeys)
	mux.HandleFunc("GET /enrol", s.page(s.getEnrol, false))
	mux.HandleFunc("POST /enrol", s.postEnrol)
	mux.HandleFunc("GET /{$}", s.page(s.getDashboard, true))
	mux.HandleFunc("GET /compose", s.page(s.getCompose, true))
	mux.HandleFunc("POST /compose", s.form(s.postCompose))
	mux.HandleFunc("GET /drafts/{id}", s.page(s.getDraft, true))
	mux.HandleFunc("POST /drafts/{id}/{action}", s.form(s.postDraftAction))
	mux.HandleFunc("GET /alerts/{id}", s.page(s.getAlert, true))
	mux.HandleFunc("GET /alerts/{id}/events", s.events)
	mux.HandleFunc("POST /alerts/{id}/retract", s.form(s.postRetract))
	mux.HandleFunc("GET /sources", s.page(s.getSources, true))
	mux.HandleFunc("POST /sources/{id}/maintenance", s.form(s.postMaintenance))
	mux.HandleFunc("POST /triggers/{source}/{event}/{action}", s.form(s.postTrigger))
	mux.HandleFunc("GET /audit", s.page(s.getAudit, true))
	return headers(mux)
}

// headers sets what every answer carries: no caching, no framing, no
// sniffing, no referrer, and a CSP whose script nonce the page uses.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 16)
		rand.Read(b)
		nonce := base64.RawURLEncoding.EncodeToString(b) // no + or /: nothing for templates to escape
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: under no-referrer a browser sends
		// "Origin: null" on a form, which the same-origin check refuses.
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), nonceKey{}, nonce)))
	})
}

type nonceKey struct{}

// token is the request's session token, from the cookie.
func token(r *http.Request) string {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return ""
	}
	return c.Value
}

// csrf is the CSRF token of a session: an HMAC of the session token, so it
// needs no storage and dies with the session.
func (s *Server) csrf(session string) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte("csrf\x00" + session))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newOnce is a one-time form token.
func newOnce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// useOnce spends a one-time form token; false if it was spent already (a
// double submission), so the action is not done twice.
func (s *Server) useOnce(tok string) bool {
	now := time.Now()
	s.onceMu.Lock()
	defer s.onceMu.Unlock()
	for k, exp := range s.once {
		if now.After(exp) {
			delete(s.once, k)
		}
	}
	if _, used := s.once[tok]; used {
		return false
	}
	s.once[tok] = now.Add(12 * time.Hour)
	return true
}

// apiResult is an API answer.
type apiResult struct {
	Status int
	Body   []byte
	Header http.Header
}

// problem is the API's problem+json, what the console shows when refused.
type problem struct {
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Field  string `json:"field"`
	Scope  string `json:"scope"`
	Status int    `json:"status"`
}

func (p *problem) Error() string {
	if p.Detail != "" {
		return p.Detail
	}
	return p.Title
}

// recorder is an in-memory ResponseWriter for in-process API calls.
type recorder struct {
	h    http.Header
	code int
	buf  bytes.Buffer
}

func (w *recorder) Header() http.Header         { return w.h }
func (w *recorder) Write(b []byte) (int, error) { return w.buf.Write(b) }
func (w *recorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

// call makes an API request in process as the person whose session token
// the request's cookie holds, decoding a 2xx answer into out; a refusal is
// a *problem.
func (s *Server) call(ctx context.Context, session, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, path, body)
	if err != nil {
		return err
	}
	req.RemoteAddr = "console"
	if session != "" {
		req.Header.Set("Authorization", "Bearer "+session)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	w := &recorder{h: http.Header{}}
	s.api.ServeHTTP(w, req)
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if w.code >= 300 {
		p := &problem{Status: w.code}
		if json.Unmarshal(w.buf.Bytes(), p) != nil || (p.Title == "" && p.Detail == "") {
			p.Title = http.StatusText(w.code)
		}
		return p
	}
	if out != nil && w.buf.Len() > 0 {
		return json.Unmarshal(w.buf.Bytes(), out)
	}
	return nil
}
