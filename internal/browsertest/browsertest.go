// Package browsertest drives a real headless Chromium (Debian's chromium,
// found or installed by testenv.Chromium) for tests of the web console:
// isolated browser contexts so that several people can be signed in at once,
// a virtual WebAuthn authenticator, full-page screenshots, and axe-core
// accessibility checks.
//
// A test starts one Browser with New and opens a Context for each person:
//
//	b := browsertest.New(t)
//	alice := b.Context(t)
//	if err := chromedp.Do(alice, chromedp.Navigate(url)); err != nil { ... }
//
// The contexts are chromedp contexts, so every chromedp action runs on them.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/tocsin-alert/tocsin/internal/testenv"
)

// Size of every page's viewport, in CSS pixels.
const (
	Width  = 1280
	Height = 900
)

// Browser is one headless Chromium process.
type Browser struct {
	ctx context.Context // the browser's own chromedp context
}

// New starts a headless Chromium for the test and stops it when the test
// ends. It fails the test if Chromium is missing and cannot be installed, or
// does not start.
func New(t testing.TB) *Browser {
	t.Helper()
	bin := testenv.Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox, // tests run as root in a container
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(Width, Height),
		chromedp.Flag("hide-scrollbars", true), // screenshots as wide as the window
		chromedp.Flag("lang", "en-US"),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	log := &logger{t: t}
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithErrorf(log.logf), chromedp.WithLogf(log.logf))
	t.Cleanup(func() {
		log.stop()
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("browsertest: start %s: %v", bin, err)
	}
	return &Browser{ctx: ctx}
}

// Context opens a new tab of Width×Height CSS pixels in a new browser context
// of its own, with its own cookies, storage and cache, as if another person
// used another browser: two people can be signed in at once. The tab is
// closed and its data thrown away when the test ends. Use the context with any
// chromedp action; it has no deadline of its own.
func (b *Browser) Context(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The window's frame takes some of --window-size; make the page itself Width×Height.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(Width, Height)); err != nil {
		t.Fatalf("browsertest: new browser context: %v", err)
	}
	return ctx
}

// VirtualAuthenticator enables the WebAuthn domain in the tab of ctx and adds
// a CTAP2 virtual authenticator to it, built in like a platform authenticator,
// that keeps resident (discoverable) keys, verifies the user and always finds
// them present, so navigator.credentials.create and get succeed without any
// prompt. Its credentials can be read with webauthn.GetCredentials.
func VirtualAuthenticator(ctx context.Context) (webauthn.AuthenticatorID, error) {
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		return "", fmt.Errorf("webauthn enable: %w", err)
	}
	r, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol:                    webauthn.AuthenticatorProtocolCtap2,
			Ctap2version:                webauthn.Ctap2versionCtap21,
			Transport:                   webauthn.AuthenticatorTransportInternal,
			HasResidentKey:              true,
			HasUserVerification:         true,
			IsUserVerified:              true,
			AutomaticPresenceSimulation: true,
		},
	})
	if err != nil {
		return "", fmt.Errorf("add virtual authenticator: %w", err)
	}
	return r.AuthenticatorID, nil
}

// Screenshot writes a PNG of the whole page of ctx, beyond the window, to path.
func Screenshot(ctx context.Context, path string) error {
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100 means PNG
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return os.WriteFile(path, png, 0o644)
}

// logger passes chromedp's messages to the test log until the test is over;
// chromedp's goroutines can still log after that, which t.Logf forbids.
type logger struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *logger) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Logf("chromedp: "+format, args...)
	}
}

func (l *logger) stop() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}
