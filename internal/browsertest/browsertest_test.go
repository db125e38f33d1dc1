package browsertest

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// csp is as strict as the console's: scripts and styles only with the nonce.
const csp = "default-src 'none'; script-src 'nonce-abc'; style-src 'nonce-abc'; img-src 'self' data:; connect-src 'self'"

const cleanPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tocsin test</title>
<style nonce="abc">body { font: 16px sans-serif; margin: 2em }</style></head>
<body><main><h1>Alerts</h1><p>Nothing to send.</p>
<button type="button">Send alert</button></main>
<script nonce="abc">window.nonceRan = true</script>
<script>window.inlineRan = true</script>
</body></html>`

const badPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tocsin test</title></head>
<body><main><h1>Alerts</h1>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
<button type="button"></button></main></body></html>`

// server serves the test pages on http://localhost:<port>, a secure context
// for WebAuthn, every page with the strict CSP.
func server(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	page := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Security-Policy", csp)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, body)
		}
	}
	mux.HandleFunc("/{$}", page(cleanPage))
	mux.HandleFunc("/bad", page(badPage))
	mux.HandleFunc("/tall", page(strings.Replace(cleanPage, "margin: 2em", "margin: 2em; height: 2000px", 1)))
	mux.HandleFunc("/signin", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: r.URL.Query().Get("who"), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		page(cleanPage)(w, r)
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("session")
		who := "nobody"
		if err == nil {
			who = c.Value
		}
		page(`<!doctype html><html lang="en"><title>who</title><main><h1 id="who">`+who+`</h1></main></html>`)(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return "http://localhost:" + port
}

func TestBrowser(t *testing.T) {
	start := time.Now()
	base := server(t)
	b := New(t)
	alice, bob := b.Context(t), b.Context(t)
	timeout := func(ctx context.Context) context.Context {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		t.Cleanup(cancel)
		return ctx
	}
	alice, bob = timeout(alice), timeout(bob)
	t.Logf("browser and two contexts up in %v", time.Since(start).Round(time.Millisecond))

	t.Run("csp", func(t *testing.T) {
		if err := chromedp.Do(alice, chromedp.Navigate(base+"/")); err != nil {
			t.Fatal(err)
		}
		ran, err := chromedp.Run(alice, chromedp.Evaluate[[]bool](`[window.nonceRan === true, window.inlineRan === true]`))
		if err != nil {
			t.Fatal(err)
		}
		if !ran[0] || ran[1] {
			t.Fatalf("CSP not in force: script with nonce ran %v, without nonce ran %v", ran[0], ran[1])
		}
	})

	t.Run("isolated contexts", func(t *testing.T) {
		who := func(ctx context.Context) string {
			t.Helper()
			if err := chromedp.Do(ctx, chromedp.Navigate(base+"/whoami")); err != nil {
				t.Fatal(err)
			}
			s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#who")))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		if err := chromedp.Do(alice, chromedp.Navigate(base+"/signin?who=alice"),
			chromedp.Evaluate[chromedp.Void](`localStorage.setItem("who", "alice")`)); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(bob, chromedp.Navigate(base+"/signin?who=bob")); err != nil {
			t.Fatal(err)
		}
		if got := who(alice); got != "alice" {
			t.Errorf("alice's context is signed in as %q", got)
		}
		if got := who(bob); got != "bob" {
			t.Errorf("bob's context is signed in as %q", got)
		}
		stored, err := chromedp.Run(bob, chromedp.Evaluate[*string](`localStorage.getItem("who")`))
		if err != nil {
			t.Fatal(err)
		}
		if stored != nil {
			t.Errorf("bob's context sees alice's localStorage: %q", *stored)
		}
		carol := timeout(b.Context(t))
		if got := who(carol); got != "nobody" {
			t.Errorf("a new context is signed in as %q", got)
		}
	})

	t.Run("webauthn", func(t *testing.T) {
		id, err := VirtualAuthenticator(alice)
		if err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(alice, chromedp.Navigate(base+"/")); err != nil {
			t.Fatal(err)
		}
		const ceremony = `(async () => {
			const rnd = n => crypto.getRandomValues(new Uint8Array(n));
			const b64 = buf => btoa(String.fromCharCode(...new Uint8Array(buf)));
			const made = await navigator.credentials.create({publicKey: {
				rp: {id: "localhost", name: "Tocsin"},
				user: {id: new TextEncoder().encode("alice"), name: "alice", displayName: "Alice"},
				challenge: rnd(32),
				pubKeyCredParams: [{type: "public-key", alg: -7}],
				authenticatorSelection: {residentKey: "required", userVerification: "required"},
			}});
			const got = await navigator.credentials.get({publicKey: {
				rpId: "localhost", challenge: rnd(32), userVerification: "required",
			}});
			return {made: b64(made.rawId), got: b64(got.rawId),
				user: new TextDecoder().decode(got.response.userHandle), type: got.type};
		})()`
		type result struct{ Made, Got, User, Type string }
		r, err := chromedp.Run(alice, chromedp.Evaluate[result](ceremony, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("create + get: %v", err)
		}
		if r.Made == "" || r.Made != r.Got || r.User != "alice" || r.Type != "public-key" {
			t.Fatalf("create + get = %+v, want the same credential for alice", r)
		}
		creds, err := chromedp.Call(alice, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: id})
		if err != nil {
			t.Fatal(err)
		}
		if len(creds.Credentials) != 1 || creds.Credentials[0].RpID != "localhost" || !creds.Credentials[0].IsResidentCredential {
			t.Fatalf("authenticator holds %+v, want one resident credential for localhost", creds.Credentials)
		}
	})

	t.Run("screenshot", func(t *testing.T) {
		if err := chromedp.Do(bob, chromedp.Navigate(base+"/")); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "page.png")
		if err := Screenshot(bob, path); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
			t.Fatalf("screenshot is not a PNG: % x", data[:min(8, len(data))])
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if size := img.Bounds().Size(); size.X != Width || size.Y != Height {
			t.Errorf("screenshot of a short page is %v, want %dx%d", size, Width, Height)
		}

		if err := chromedp.Do(bob, chromedp.Navigate(base+"/tall")); err != nil {
			t.Fatal(err)
		}
		if err := Screenshot(bob, path); err != nil {
			t.Fatal(err)
		}
		data, err = os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Width != Width || cfg.Height < 2000 {
			t.Errorf("screenshot of a 2000px tall page is %dx%d, want the whole page", cfg.Width, cfg.Height)
		}
	})

	t.Run("axe", func(t *testing.T) {
		if err := chromedp.Do(bob, chromedp.Navigate(base+"/bad")); err != nil {
			t.Fatal(err)
		}
		vs, err := Axe(bob)
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		for _, v := range Serious(vs) {
			t.Logf("bad page: %v", v)
			found[v.ID] = len(v.Nodes) == 1 && v.Nodes[0].Target != "" && v.Nodes[0].HTML != ""
		}
		if !found["image-alt"] || !found["button-name"] {
			t.Errorf("axe found %v on the bad page, want image-alt and button-name with their elements", vs)
		}
		if _, err := Axe(bob); err != nil { // a second run reuses the injected axe
			t.Fatal(err)
		}

		if err := chromedp.Do(bob, chromedp.Navigate(base+"/")); err != nil {
			t.Fatal(err)
		}
		vs, err = Axe(bob)
		if err != nil {
			t.Fatal(err)
		}
		if s := Serious(vs); len(s) > 0 {
			t.Errorf("axe found serious violations on the clean page: %v", s)
		}
	})
	t.Logf("TestBrowser took %v", time.Since(start).Round(time.Millisecond))
}
