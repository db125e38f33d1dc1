package browsertest

import (
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/chromedp/chromedp"
)

// axeSource is axe-core 4.14.1 (axe.min.js from the npm package axe-core,
// MPL-2.0: testdata/axe-LICENSE.txt and testdata/axe-LICENSE-3RD-PARTY.txt).
// To update: `npm pack axe-core@4`, then copy package/axe.min.js and the
// licenses from the tarball and change the version here.
//
//go:embed testdata/axe.min.js
var axeSource string

// Violation is one axe-core rule that the page breaks.
type Violation struct {
	ID      string `json:"id"`      // the rule, such as "image-alt"
	Impact  string `json:"impact"`  // "minor", "moderate", "serious" or "critical"
	Help    string `json:"help"`    // what the rule asks for
	HelpURL string `json:"helpUrl"` // the rule's page at Deque University
	Nodes   []Node `json:"nodes"`   // the elements that break it
}

// Node is one element that breaks a rule.
type Node struct {
	Target  string `json:"target"`  // a CSS selector of the element (" >>> " steps into a frame or shadow root)
	HTML    string `json:"html"`    // the start of its markup
	Summary string `json:"summary"` // how to fix it
}

// String is the violation on one line, with its elements, for a test's log.
func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s] %s:", v.ID, v.Impact, v.Help)
	for _, n := range v.Nodes {
		fmt.Fprintf(&b, " %s", n.Target)
	}
	return b.String()
}

// axeRun runs axe on the document and maps its violations to []Violation.
const axeRun = `(async () => {
	const r = await axe.run(document, {resultTypes: ["violations"], iframes: false});
	const sel = t => Array.isArray(t) ? t.join(" >>> ") : String(t);
	return r.violations.map(v => ({
		id: v.id, impact: v.impact || "", help: v.help, helpUrl: v.helpUrl,
		nodes: v.nodes.map(n => ({target: n.target.map(sel).join(" >>> "), html: n.html, summary: n.failureSummary || ""})),
	}));
})()`

// Axe checks the page of ctx with axe-core and returns the rules it breaks.
// axe-core is put into the page through the DevTools protocol (Runtime.evaluate),
// which the page's Content-Security-Policy does not block, and only once per
// document. Only the top document is checked, not the frames in it.
func Axe(ctx context.Context) ([]Violation, error) {
	loaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof window.axe === "object" && typeof window.axe.run === "function"`))
	if err != nil {
		return nil, fmt.Errorf("axe: %w", err)
	}
	if !loaded {
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](axeSource+"\n;true")); err != nil {
			return nil, fmt.Errorf("axe: inject axe-core: %w", err)
		}
	}
	vs, err := chromedp.Run(ctx, chromedp.Evaluate[[]Violation](axeRun, chromedp.EvalAwaitPromise))
	if err != nil {
		return nil, fmt.Errorf("axe: run: %w", err)
	}
	return vs, nil
}

// Serious returns the violations whose impact is serious or critical, those
// that keep some people from using the page at all.
func Serious(vs []Violation) []Violation {
	var out []Violation
	for _, v := range vs {
		if v.Impact == "serious" || v.Impact == "critical" {
			out = append(out, v)
		}
	}
	return out
}
