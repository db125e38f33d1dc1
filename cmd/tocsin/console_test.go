package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tocsin-alert/tocsin/gateway"
	"github.com/tocsin-alert/tocsin/internal/browsertest"
	"github.com/tocsin-alert/tocsin/internal/testenv"
)

// consoleKit is the demo with its console, a headless Chromium with a
// browser context for Anna and one for Ben, and the helpers the console's
// browser tests share.
type consoleKit struct {
	start             time.Time
	shots             string // where the screenshots go
	addr, base        string // the gateway's address, the console's URL
	out               *syncBuffer
	anna, ben         context.Context
	annaLink, benLink string
	do                func(c context.Context, what string, actions ...chromedp.Action[chromedp.Void])
	eval              func(c context.Context, expr string) string
	waitJS            func(c context.Context, d time.Duration, what, expr string)
	mark              func(c context.Context)
	navigated         func(c context.Context, what string)
	submit            func(c context.Context, button string)
	open              func(c context.Context, url string)
	path              func(c context.Context) string
	text              func(c context.Context, sel string) string
	shot              func(c context.Context, name string)
	axe               func(c context.Context, page string)
	code              func(secret string, step int) string
	enrol             func(c context.Context, link, id string) string
	login             func(c context.Context, id, secret string)
}

// newConsoleKit starts the demo (its console on a fixed port), a browser,
// and the helpers; all stop with the test.
func newConsoleKit(t *testing.T) *consoleKit {
	start := time.Now()
	shots := os.Getenv("TOCSIN_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	// The demo, its console on a fixed port so that it is http://localhost:PORT
	// (a secure context: security keys work there).
	// A free port can be taken by another test's process between FreePort
	// and the console's bind (the console then does not serve, the gateway
	// does): start again on another port.
	var cport int
	var addr string
	var out *syncBuffer
	for try := 0; ; try++ {
		cport = testenv.FreePort(t)
		addr, out = startDemo(t, "--console", fmt.Sprintf("127.0.0.1:%d", cport))
		if strings.Contains(out.String(), "Console: ") || try == 2 {
			break
		}
		t.Logf("console port %d was taken; starting the demo again", cport)
	}
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
	return &consoleKit{start: start, shots: shots, addr: addr, base: base, out: out, anna: anna, ben: ben,
		annaLink: annaLink, benLink: benLink, do: do, eval: eval, waitJS: waitJS, mark: mark, navigated: navigated,
		submit: submit, open: open, path: path, text: text, shot: shot, axe: axe, code: code, enrol: enrol, login: login}
}

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
	k := newConsoleKit(t)
	start, shots, base, anna, ben := k.start, k.shots, k.base, k.anna, k.ben
	do, eval, waitJS, mark, navigated, submit, open := k.do, k.eval, k.waitJS, k.mark, k.navigated, k.submit, k.open
	path, text, shot, axe, enrol, login := k.path, k.text, k.shot, k.axe, k.enrol, k.login
	annaLink, benLink := k.annaLink, k.benLink
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

// TestConsoleMaintenance is the amok button's maintenance through the
// console: Anna (author, maintainer) puts the demo's button into maintenance
// on /sources; a signed trigger from it, published on the demo's broker as
// the panel does, is quarantined (nothing sounds) and listed there, with a
// banner on the dashboard; Anna's own early end is refused (four-eyes); she
// releases the trigger as an alert, which waits for Ben's approval and then
// sounds; a second quarantined trigger she dismisses with a reason; Ben, the
// second person, ends the maintenance and the banner goes. /sources is
// checked with axe-core and photographed.
func TestConsoleMaintenance(t *testing.T) {
	k := newConsoleKit(t)
	anna, ben, base := k.anna, k.ben, k.base
	const source = "school-amok-button"
	sources := base + "/sources"

	annaSecret := k.enrol(anna, k.annaLink, "anna")
	k.login(anna, "anna", annaSecret)
	benSecret := k.enrol(ben, k.benLink, "ben")
	k.login(ben, "ben", benSecret)
	t.Logf("both enrolled and signed in after %v", time.Since(k.start).Round(time.Millisecond))

	// The panel: signed triggers on the broker the demo printed.
	m := regexp.MustCompile(`mosquitto_pub -h (\S+) -p (\d+)`).FindStringSubmatch(k.out.String())
	if m == nil {
		t.Fatalf("the demo printed no mosquitto_pub line:\n%s", k.out.String())
	}
	panel := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + m[1] + ":" + m[2]).SetClientID("console-test-button"))
	if tok := panel.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to the demo's broker: %v", tok.Error())
	}
	defer panel.Disconnect(100)
	press := func(event string) {
		t.Helper()
		tr := gateway.Trigger{Trigger: "amok-button", Zone: "soest-school", EventID: event, Timestamp: time.Now().UTC().Format(time.RFC3339)}
		tr.HMAC = gateway.TriggerMAC([]byte(demoButtonKey), tr)
		b, err := json.Marshal(tr)
		if err != nil {
			t.Fatal(err)
		}
		if tok := panel.Publish("tocsin/v1/trigger/"+source, 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish trigger %s: %v", event, tok.Error())
		}
	}
	// listed waits until /sources lists the quarantined trigger event.
	row := func(event string) string {
		return `[...document.querySelectorAll("table.quarantined tbody tr")].find(r => r.cells[1].innerText.includes(` + jsString(event) + `))`
	}
	listed := func(c context.Context, event string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			k.open(c, sources)
			if k.eval(c, `String(!!`+row(event)+`)`) == "true" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/sources never lists the quarantined trigger %s:\n%s", event, k.text(c, "main"))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	handled := func(c context.Context, event string) string {
		t.Helper()
		return k.eval(c, `(`+row(event)+` || {cells: [{}, {}, {}, {innerText: "(no row)"}]}).cells[3].innerText.trim()`)
	}
	sirens := func() int { return strings.Count(k.out.String(), "  siren ") }
	state := func(c context.Context) string {
		return k.eval(c, `(document.querySelector("table.sources tbody tr") || {cells: [{}, {}, {innerText: ""}]}).cells[2].innerText.trim()`)
	}
	banner := func(c context.Context) string {
		k.open(c, base+"/")
		return k.text(c, "section.banner")
	}
	endForm := `form[action="/sources/` + source + `/maintenance"]:has(input[name=do][value=end])`

	// 1. Anna starts maintenance of the amok button.
	k.open(anna, sources)
	start := `form[action="/sources/` + source + `/maintenance"]:has(input[name=do][value=start])`
	k.do(anna, "anna gives a reason", chromedp.SendKeys(chromedp.CSS(start+` input[name=reason]`), "IT work on the panel"))
	k.submit(anna, start+` button[type=submit]`)
	if p := k.path(anna); p != "/sources" {
		t.Fatalf("starting maintenance ends on %s: %s", p, k.text(anna, "main"))
	}
	if st := state(anna); !strings.Contains(st, "IT work on the panel") || !strings.Contains(st, "anna") {
		t.Fatalf("the source's state after starting maintenance: %q", st)
	}

	// 2. A trigger is quarantined: nothing sounds; /sources lists it, the
	// dashboard has a banner.
	before := sirens()
	first := fmt.Sprintf("btn-maint-1-%d", time.Now().UnixNano())
	press(first)
	listed(anna, first)
	if h := handled(anna, first); h != "" {
		t.Errorf("the new quarantined trigger shows handled %q", h)
	}
	if b := banner(anna); !strings.Contains(b, source) || !strings.Contains(b, "IT work on the panel") {
		t.Errorf("the dashboard's maintenance banner: %q", b)
	}
	t.Logf("trigger %s quarantined after %v", first, time.Since(k.start).Round(time.Millisecond))

	// 3. Anna cannot end her own maintenance.
	k.open(anna, sources)
	k.submit(anna, endForm+` button[type=submit]`)
	if e := k.text(anna, ".error"); strings.Contains(e, "second person") {
		t.Logf("anna ending her own maintenance: %q", e)
	} else {
		t.Errorf("anna ending her own maintenance: %q, want a four-eyes refusal; the page: %s", e, k.text(anna, "body"))
	}
	k.open(anna, sources)
	if st := state(anna); !strings.Contains(st, "IT work on the panel") {
		t.Errorf("after anna's refused end the source's state is %q, want still in maintenance", st)
	}

	// 4. Anna releases it as an alert: a pending draft; Ben approves; the
	// sirens sound.
	k.submit(anna, `form[action="/triggers/`+source+`/`+first+`/release"] button[type=submit]`)
	p := k.path(anna)
	if !strings.HasPrefix(p, "/drafts/") {
		t.Fatalf("releasing the trigger ends on %s: %s", p, k.text(anna, "main"))
	}
	if st := k.text(anna, "h1 .state"); st != "pending" {
		t.Fatalf("the released trigger's draft is %q, want pending", st)
	}
	if n := sirens(); n != before {
		t.Fatalf("a siren sounded before approval:\n%s", k.out.String())
	}
	id := strings.TrimPrefix(p, "/drafts/")
	k.open(ben, base+"/")
	k.submit(ben, `section[aria-labelledby=pending-h] a[href="/drafts/`+id+`"]`)
	k.do(ben, "ben types the zone name", chromedp.SendKeys(chromedp.CSS(`#approve input[name=confirm]`), k.text(ben, "#approve strong")))
	k.submit(ben, `#approve button[type=submit]`)
	if p := k.path(ben); p != "/alerts/"+id {
		t.Fatalf("approving %s ends on %s: %s", id, p, k.text(ben, "main"))
	}
	k.waitJS(ben, 20*time.Second, "siren and pa delivered on the live page", `(() => ["siren", "pa"].every(k => {
		const row = document.querySelector('#channels tr[data-kind="' + k + '"]');
		if (!row) return false;
		const n = f => Number(row.querySelector('td[data-f="' + f + '"]').textContent);
		return n("targets") > 0 && n("delivered") === n("targets");
	}))()`)
	if n := sirens() - before; n < 3 {
		t.Errorf("%d siren commands after the approval, want the school's three", n)
	}
	t.Logf("released trigger %s sounded as alert %s after %v", first, id, time.Since(k.start).Round(time.Millisecond))
	listed(anna, first)
	if h := handled(anna, first); !strings.Contains(h, "released by anna") {
		t.Errorf("the released trigger shows handled %q", h)
	}

	// 5. A second quarantined trigger, dismissed with a reason. The sources
	// page is photographed with it waiting.
	second := fmt.Sprintf("btn-maint-2-%d", time.Now().UnixNano())
	press(second)
	listed(anna, second)
	k.axe(anna, "sources")
	k.shot(anna, "08-sources-quarantine.png")
	dismiss := `form[action="/triggers/` + source + `/` + second + `/dismiss"]`
	k.do(anna, "anna gives a reason", chromedp.SendKeys(chromedp.CSS(dismiss+` input[name=reason]`), "test of the panel"))
	k.submit(anna, dismiss+` button[type=submit]`)
	if p := k.path(anna); p != "/sources" {
		t.Fatalf("dismissing ends on %s: %s", p, k.text(anna, "main"))
	}
	if h := handled(anna, second); h != "dismissed by anna: test of the panel" {
		t.Errorf("the dismissed trigger shows handled %q", h)
	}

	// 6. Ben, the second person, ends the maintenance (his sign-in is the
	// fresh step-up); the banner goes.
	k.open(ben, sources)
	k.submit(ben, endForm+` button[type=submit]`)
	if e := k.text(ben, ".error"); e != "" {
		// Demo bug: Ben is approver and author only (cmd/tocsin/demo.go,
		// operators), no maintainer, so the demo has no second person who
		// may end Anna's maintenance, yet the console offers him the form.
		// Reported, then ended with the demo's operator key (an API key,
		// not held to four-eyes) so that the banner's end is still checked.
		t.Errorf("demo bug: ben, the second person, may not end anna's maintenance (%q): the demo gives him no maintainer role", e)
		req, err := http.NewRequest("DELETE", "http://"+k.addr+"/v1/sources/"+source+"/maintenance", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+demoOperatorKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNoContent {
			t.Fatalf("ending the maintenance with the operator key: %s", res.Status)
		}
	}
	k.open(ben, sources)
	if st := state(ben); st != "" {
		t.Errorf("after ben ended the maintenance the source's state is %q", st)
	}
	if b := banner(ben); b != "" {
		t.Errorf("the dashboard still has a maintenance banner: %q", b)
	}
	t.Logf("TestConsoleMaintenance took %v; screenshots in %s", time.Since(k.start).Round(time.Millisecond), k.shots)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`).Replace(s) + "'"
}
