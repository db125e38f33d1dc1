package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/tocsin-alert/tocsin/internal/browsertest"
	"github.com/tocsin-alert/tocsin/internal/testenv"
)

// TestConsoleStory walks the demo's story through the web console in a real
// (headless) Chromium, each person in a browser context of their own: Anna
// and Ben enrol from their printed links and sign in with a TOTP code, Ben
// registers a security key and signs in with it, Anna composes from the
// template and submits, Ben's approval of his own alert is refused
// (four-eyes), Ben approves Anna's from his dashboard by typing the zone's
// name, the live page's counts reach every channel, Anna retracts it from the
// dashboard in one click and sees retracted n/n, and a second alert is
// retracted from its page with the keyboard alone. The pages are checked
// with axe-core and photographed (into $TOCSIN_SCREENSHOTS when set: make
// screenshots).
func TestConsoleStory(t *testing.T) {
	start := time.Now()
	shots := os.Getenv("TOCSIN_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	// The demo, its console on a fixed port so that it is http://localhost:PORT
	// (a secure context: security keys work there).
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cport := testenv.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, []string{"--listen", addr, "--console", fmt.Sprintf("127.0.0.1:%d", cport), "--log-level", "error"}, out)
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo = %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("demo did not stop")
		}
	}()
	waitFor(t, out, "centre receives appears below", 1)
	base := fmt.Sprintf("http://localhost:%d", cport)
	link := func(who string) string {
		t.Helper()
		m := regexp.MustCompile(who + ` \([^)]*\):\s+(\S+/enrol#\S+)\s+password (\S+)`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("the demo printed no console link for %s:\n%s", who, out.String())
		}
		if !strings.HasPrefix(m[1], base+"/enrol#") {
			t.Fatalf("%s's link is %s, want it on %s", who, m[1], base)
		}
		return m[1]
	}
	annaLink, benLink := link("Anna"), link("Ben")

	b := browsertest.New(t)
	person := func() context.Context {
		c, cancel := context.WithTimeout(b.Context(t), 2*time.Minute)
		t.Cleanup(cancel)
		return c
	}
	anna, ben := person(), person()

	// --- helpers ---
	do := func(c context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(c, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(c context.Context, expr string) string {
		t.Helper()
		s, err := chromedp.Run(c, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return s
	}
	// waitJS polls a JavaScript condition (through navigations) for up to d.
	waitJS := func(c context.Context, d time.Duration, what, expr string) {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			ok, err := chromedp.Run(c, chromedp.Evaluate[bool](expr))
			if err == nil && ok {
				return
			}
			if time.Now().After(deadline) {
				body, _ := chromedp.Run(c, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
				t.Fatalf("after %v: %s (%v); the page:\n%s", d, what, err, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// navigated waits for the document that follows an action on the page.
	mark := func(c context.Context) {
		do(c, "mark the page", chromedp.Evaluate[chromedp.Void](`window.__stale = true`))
	}
	navigated := func(c context.Context, what string) {
		t.Helper()
		waitJS(c, 10*time.Second, what, `!window.__stale && document.readyState === "complete"`)
	}
	// submit clicks a button and waits for the page that answers.
	submit := func(c context.Context, button string) {
		t.Helper()
		mark(c)
		do(c, "click "+button, chromedp.Click(chromedp.CSS(button)))
		navigated(c, "the page after "+button)
	}
	open := func(c context.Context, url string) {
		t.Helper()
		do(c, "open "+url, chromedp.Navigate(url))
		waitJS(c, 10*time.Second, "load "+url, `document.readyState === "complete"`)
	}
	path := func(c context.Context) string { return eval(c, `location.pathname`) }
	text := func(c context.Context, sel string) string {
		t.Helper()
		return eval(c, `(document.querySelector(`+jsString(sel)+`) || {innerText: ""}).innerText.trim()`)
	}
	shot := func(c context.Context, name string) {
		t.Helper()
		if err := browsertest.Screenshot(c, filepath.Join(shots, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	axe := func(c context.Context, page string) {
		t.Helper()
		vs, err := browsertest.Axe(c)
		if err != nil {
			t.Errorf("axe on the %s page: %v", page, err)
			return
		}
		t.Logf("axe on the %s page: %d rules broken, %d of them serious or critical", page, len(vs), len(browsertest.Serious(vs)))
		for _, v := range vs {
			if v.Impact != "serious" && v.Impact != "critical" {
				t.Logf("    axe on the %s page (not serious): %v", page, v)
			}
		}
		for _, v := range browsertest.Serious(vs) {
			t.Errorf("axe on the %s page (%s): %v", page, path(c), v)
			for _, n := range v.Nodes {
				t.Logf("    %s: %s", n.Target, n.HTML)
			}
		}
	}
	code := func(secret string, step int) string {
		t.Helper()
		s, err := demoCode(secret, step, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	originFix := false
	// 1. Enrolment from the printed link, then sign-in with a code.
	enrol := func(c context.Context, link, id string) string {
		t.Helper()
		open(c, link)
		waitJS(c, 5*time.Second, "the invitation token from the link's fragment", `document.getElementById("invite-token").value.length > 0`)
		do(c, id+" sets a password", chromedp.SendKeys(chromedp.CSS(`#enrol input[name=password]`), demoPassword(id)))
		submit(c, `#enrol button[type=submit]`)
		if strings.Contains(text(c, "body"), "forbidden: cross-site") && !originFix {
			// Console bug: every answer says Referrer-Policy: no-referrer
			// (console/console.go, headers), under which a browser sends
			// "Origin: null" with a form's POST; sameOrigin
			// (console/pages.go) refuses "null", so no form of the console
			// works in a browser. Reported, then worked around so that the
			// rest of the story runs: the browser sends the real Origin.
			t.Errorf("console bug: a form's POST is refused as cross-site (%q): Referrer-Policy no-referrer makes the browser send Origin: null, which sameOrigin refuses", text(c, "body"))
			originFix = true
			for _, p := range []context.Context{anna, ben} {
				if _, err := chromedp.Call(p, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Origin": base}}); err != nil {
					t.Fatal(err)
				}
			}
			open(c, "about:blank") // from /enrol, the link alone only moves to its fragment
			open(c, link)
			waitJS(c, 5*time.Second, "the invitation token from the link's fragment", `document.getElementById("invite-token").value.length > 0`)
			do(c, id+" sets a password", chromedp.SendKeys(chromedp.CSS(`#enrol input[name=password]`), demoPassword(id)))
			submit(c, `#enrol button[type=submit]`)
		}
		secret := text(c, "#totp-secret")
		if secret == "" {
			t.Fatalf("%s's enrolment shows no TOTP secret on %s: %s", id, eval(c, `location.href`), eval(c, `document.documentElement.outerHTML`))
		}
		do(c, id+" enters the code", chromedp.SendKeys(chromedp.CSS(`#enrol-code input[name=code]`), code(secret, -1)))
		submit(c, `#enrol-code button[type=submit]`)
		if p := path(c); p != "/login" {
			t.Fatalf("%s's enrolment ends on %s: %s", id, p, text(c, "main"))
		}
		return secret
	}
	login := func(c context.Context, id, secret string) {
		t.Helper()
		do(c, id+" signs in",
			chromedp.SendKeys(chromedp.CSS(`#login input[name=operator]`), id),
			chromedp.SendKeys(chromedp.CSS(`#login input[name=password]`), demoPassword(id)),
			chromedp.SendKeys(chromedp.CSS(`#login input[name=code]`), code(secret, 0)))
		submit(c, `#login button[type=submit]`)
		if p := path(c); p != "/" {
			t.Fatalf("%s's sign-in ends on %s: %s", id, p, text(c, "main"))
		}
	}
	annaSecret := enrol(anna, annaLink, "anna")
	axe(anna, "login")
	shot(anna, "01-login.png")
	login(anna, "anna", annaSecret)
	benSecret := enrol(ben, benLink, "ben")
	login(ben, "ben", benSecret)
	t.Logf("both enrolled and signed in after %v", time.Since(start).Round(time.Millisecond))

	// 2. Ben's security key: registered, then used to sign in.
	if _, err := browsertest.VirtualAuthenticator(ben); err != nil {
		t.Fatal(err)
	}
	open(ben, base+"/keys")
	do(ben, "register a key", chromedp.Click(chromedp.CSS("#register-key")))
	waitJS(ben, 10*time.Second, "the key registered", `document.getElementById("key-result").textContent.length > 0`)
	if got := text(ben, "#key-result"); got != "Security key registered." {
		t.Fatalf("registering a key: %q", got)
	}
	submit(ben, `header form[action="/logout"] button[type=submit]`)
	if p := path(ben); p != "/login" {
		t.Fatalf("signing out ends on %s", p)
	}
	waitJS(ben, 5*time.Second, "the security-key button shown", `!document.getElementById("signin-key").hidden`)
	do(ben, "ben types name and password",
		chromedp.SendKeys(chromedp.CSS(`#login input[name=operator]`), "ben"),
		chromedp.SendKeys(chromedp.CSS(`#login input[name=password]`), demoPassword("ben")))
	mark(ben)
	do(ben, "sign in with the key", chromedp.Click(chromedp.CSS("#signin-key")))
	navigated(ben, "the page after signing in with the key")
	if p, me := path(ben), text(ben, "header .me"); p != "/" || !strings.HasPrefix(me, "Ben") {
		t.Fatalf("signing in with the key ends on %s as %q: %s", p, me, text(ben, "main"))
	}

	// 3. Anna composes from the template and submits.
	compose := func(c context.Context, who string, photo bool) string {
		t.Helper()
		open(c, base+"/compose")
		do(c, who+" chooses actual", chromedp.Click(chromedp.CSS(`#compose input[name=status][value=actual]`)))
		if n := eval(c, `String(document.querySelectorAll("#compose input[name=zones]:checked").length)`); n != "1" {
			t.Errorf("the template preselects %s zones, want 1 (soest-school)", n)
		}
		if photo {
			axe(c, "compose")
			shot(c, "03-compose.png")
		}
		submit(c, `#compose button[name=submit]`)
		p := path(c)
		if !strings.HasPrefix(p, "/drafts/") {
			t.Fatalf("%s's submission ends on %s: %s", who, p, text(c, "main"))
		}
		if st := text(c, "h1 .state"); st != "pending" {
			t.Fatalf("%s's draft is %q, want pending", who, st)
		}
		return strings.TrimPrefix(p, "/drafts/")
	}
	first := compose(anna, "anna", true)
	t.Logf("anna's draft %s pending after %v", first, time.Since(start).Round(time.Millisecond))

	// 4. Ben cannot approve his own alert.
	own := compose(ben, "ben", false)
	zone := text(ben, "#approve strong")
	if zone != "Education centre Soest" {
		t.Errorf("the approve form asks for zone %q", zone)
	}
	do(ben, "ben confirms his own", chromedp.SendKeys(chromedp.CSS(`#approve input[name=confirm]`), zone))
	submit(ben, `#approve button[type=submit]`)
	if e := text(ben, ".error"); !strings.Contains(e, "four-eyes") {
		t.Fatalf("approving his own alert %s: %q, want a four-eyes refusal; the page: %s", own, e, text(ben, "body"))
	}

	// 5. Ben approves Anna's from his dashboard's pending list.
	open(ben, base+"/")
	pending := `section[aria-labelledby=pending-h] a[href="/drafts/` + first + `"]`
	waitJS(ben, 5*time.Second, "anna's draft in ben's pending list", `!!document.querySelector(`+jsString(pending)+`)`)
	axe(ben, "dashboard")
	shot(ben, "02-dashboard-pending.png")
	approve := func(id string, photo bool) {
		t.Helper()
		open(ben, base+"/")
		submit(ben, `section[aria-labelledby=pending-h] a[href="/drafts/`+id+`"]`)
		if p := path(ben); p != "/drafts/"+id {
			t.Fatalf("the pending link opens %s", p)
		}
		do(ben, "ben types the zone name", chromedp.SendKeys(chromedp.CSS(`#approve input[name=confirm]`), text(ben, "#approve strong")))
		if photo {
			axe(ben, "draft")
			shot(ben, "04-draft-approval.png")
		}
		submit(ben, `#approve button[type=submit]`)
		if p := path(ben); p != "/alerts/"+id {
			t.Fatalf("approving %s ends on %s: %s", id, p, text(ben, "main"))
		}
		// The first view of a live alert lists what is still waiting, each
		// row naming its target.
		rows := eval(ben, `JSON.stringify([...document.querySelectorAll("table.waiting tbody tr")].map(r => [...r.cells].map(c => c.textContent.trim())))`)
		var waiting [][]string
		if err := json.Unmarshal([]byte(rows), &waiting); err != nil {
			t.Fatal(err)
		}
		for _, r := range waiting {
			if len(r) != 2 || r[0] == "" {
				t.Errorf("console bug: a row of the alert page's \"Still waiting\" table names no target: %q", r)
				break
			}
		}
	}
	approve(first, true)
	// The live page, updated by SSE: every channel delivered to all its targets.
	kinds := []string{"siren", "pa", "sms", "voice", "dispatch"}
	delivered := `(() => {
		const want = ["siren", "pa", "sms", "voice", "dispatch"];
		return want.every(k => {
			const row = document.querySelector('#channels tr[data-kind="' + k + '"]');
			if (!row) return false;
			const n = f => Number(row.querySelector('td[data-f="' + f + '"]').textContent);
			return n("targets") > 0 && n("delivered") === n("targets");
		});
	})()`
	waitJS(ben, 20*time.Second, "every channel delivered on the live page", delivered)
	channels := func(c context.Context) string {
		return eval(c, `[...document.querySelectorAll("#channels tbody tr")].map(r => r.innerText.replace(/\s+/g, " ")).join("\n")`)
	}
	t.Logf("alert %s delivered after %v:\n%s", first, time.Since(start).Round(time.Millisecond), channels(ben))
	for _, k := range kinds {
		if eval(ben, `document.querySelector('#channels tr[data-kind="`+k+`"] td[data-f=delivered]').textContent`) == "0" {
			t.Errorf("channel %s shows nothing delivered", k)
		}
	}
	// The "Still waiting" list is drawn once, with the page; the counts
	// above it move by SSE. The screenshot shows the page as drawn now.
	open(ben, base+"/alerts/"+first)
	axe(ben, "alert")
	shot(ben, "05-alert-live.png")

	// 6. Anna retracts it from her dashboard in one click.
	allRetracted := `(() => {
		const cells = [...document.querySelectorAll("#channels tr[data-kind] td[data-f=retracted]")];
		return cells.length === 5 && cells.every(td => {
			const m = /^retracted (\d+)\/(\d+)$/.exec(td.textContent.trim());
			return m && m[1] === m[2] && Number(m[1]) > 0;
		});
	})()`
	open(anna, base+"/")
	submit(anna, `table.alerts tr:has(a[href="/alerts/`+first+`"]) form.retract button[type=submit]`)
	if p := path(anna); p != "/alerts/"+first {
		t.Fatalf("retracting from the dashboard ends on %s: %s", p, text(anna, "main"))
	}
	waitJS(anna, 15*time.Second, "retracted n/n in every channel", allRetracted)
	t.Logf("alert %s retracted after %v:\n%s", first, time.Since(start).Round(time.Millisecond), channels(anna))
	open(anna, base+"/alerts/"+first)
	waitJS(anna, 5*time.Second, "retracted n/n in every channel as the page is drawn", allRetracted)
	shot(anna, "06-alert-retracted.png")

	// 7. A second alert, retracted from its page with the keyboard only.
	second := compose(anna, "anna", false)
	approve(second, false)
	open(anna, base+"/alerts/"+second)
	focused := `document.activeElement === document.querySelector("#retract button")`
	tabs := 0
	for ; tabs < 40; tabs++ {
		if ok, _ := chromedp.Run(anna, chromedp.Evaluate[bool](focused)); ok {
			break
		}
		do(anna, "Tab", chromedp.KeyEvent(kb.Tab))
	}
	if tabs == 40 {
		t.Fatalf("40 Tabs never reach the Retract button; focus on %s", eval(anna, `document.activeElement.outerHTML`))
	}
	mark(anna)
	do(anna, "Enter", chromedp.KeyEvent(kb.Enter))
	navigated(anna, "the page after Enter on Retract")
	if p := path(anna); p != "/alerts/"+second {
		t.Fatalf("retracting with the keyboard ends on %s: %s", p, text(anna, "main"))
	}
	waitJS(anna, 15*time.Second, "retracted n/n in every channel after the keyboard retraction", allRetracted)
	t.Logf("alert %s retracted with %d Tabs and Enter after %v", second, tabs, time.Since(start).Round(time.Millisecond))

	// 8 and 9. The audit names who did what.
	open(anna, base+"/audit?subject="+first)
	audit := text(anna, "table.audit")
	for _, want := range []string{"draft.submitted\toperator:anna", "draft.approved\toperator:ben", "alert.retracted\toperator:anna"} {
		if !strings.Contains(audit, want) {
			t.Errorf("the audit of %s lacks %q:\n%s", first, want, audit)
		}
	}
	axe(anna, "audit")
	shot(anna, "07-audit.png")
	t.Logf("TestConsoleStory took %v; screenshots in %s", time.Since(start).Round(time.Millisecond), shots)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`).Replace(s) + "'"
}
