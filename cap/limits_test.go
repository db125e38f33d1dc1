package cap_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/tocsin-alert/tocsin/cap"
)

// insert puts inner into the OASIS thunderstorm warning just before the
// first occurrence of before.
func insert(t *testing.T, inner, before string) string {
	t.Helper()
	valid, err := os.ReadFile("testdata/oasis-example-a2-thunderstorm-warning.xml")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(valid), before, inner+before, 1)
	if doc == string(valid) {
		t.Fatalf("no %s to insert before", before)
	}
	return doc
}

// inInfo puts inner into the document's <info>, before its <area>.
func inInfo(t *testing.T, inner string) string { return insert(t, inner, "<area>") }

// nested is depth elements named x, one inside the other.
func nested(depth int) string {
	return strings.Repeat("<x>", depth) + strings.Repeat("</x>", depth)
}

// Documents nested too deep or with too many elements are refused at the
// first element past the limit, naming it, and cheaply: a 700 KB document
// nested 100,000 deep once took the process past 6 GB (each open element
// kept its whole path). Just under the limits, Parse reports what it always
// did.
func TestLimits(t *testing.T) {
	// Inside <info> (depth 2), the deepest x allowed is at depth MaxDepth.
	xs := strings.Repeat("x/", cap.MaxDepth-2)
	// MaxElements/3+1 parameters of three elements each, beside the
	// document's own: past the count limit, yet under MaxSize.
	params := strings.Repeat("<parameter><valueName>a</valueName><value/></parameter>", cap.MaxElements/3+1)
	for _, tt := range []struct {
		name, doc string
		want      cap.Problem // want.Element is a prefix
		maxAlloc  uint64      // bytes Parse may allocate; 0: not measured
	}{
		{"100,000 deep in info", inInfo(t, nested(100_000)),
			cap.Problem{Element: "alert/info[0]/" + xs + "x", Msg: fmt.Sprintf("nested deeper than %d elements", cap.MaxDepth)}, 50 << 20},
		{"one deeper than the limit", inInfo(t, nested(cap.MaxDepth-1)),
			cap.Problem{Element: "alert/info[0]/" + xs + "x", Msg: fmt.Sprintf("nested deeper than %d elements", cap.MaxDepth)}, 0},
		{"deep in the signature", insert(t, `<Signature xmlns="`+cap.SignatureNamespace+`">`+nested(100_000)+"</Signature>", "</alert>"),
			cap.Problem{Element: "alert/Signature/x/x/x/", Msg: fmt.Sprintf("nested deeper than %d elements", cap.MaxDepth)}, 50 << 20},
		{"at the depth limit: only the unknown element", inInfo(t, nested(cap.MaxDepth-2)),
			cap.Problem{Element: "alert/info[0]/x", Msg: "unknown element in <info>"}, 0},
		{"more elements than the limit", inInfo(t, params),
			cap.Problem{Element: "alert/info[0]/parameter[", Msg: fmt.Sprintf("more than %d elements", cap.MaxElements)}, 50 << 20},
		{"many elements in an unknown one", inInfo(t, "<x>"+strings.Repeat("<y/>", cap.MaxElements)+"</x>"),
			cap.Problem{Element: "alert/info[0]/x/y", Msg: fmt.Sprintf("more than %d elements", cap.MaxElements)}, 50 << 20},
		// A long name deep down: the path is cut, not copied at every level.
		{"long names, deep", inInfo(t, strings.Repeat("<"+strings.Repeat("n", 10_000)+">", 40)),
			cap.Problem{Element: "alert/info[0]/nnnn", Msg: fmt.Sprintf("nested deeper than %d elements", cap.MaxDepth)}, 50 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.doc) > cap.MaxSize {
				t.Fatalf("document of %d bytes, over MaxSize", len(tt.doc))
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := cap.Parse([]byte(tt.doc))
			runtime.ReadMemStats(&after)
			var ps cap.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Parse = %v, want Problems", err)
			}
			last := ps[len(ps)-1]
			if !strings.HasPrefix(last.Element, tt.want.Element) || last.Msg != tt.want.Msg {
				t.Errorf("Parse = %.300v\nlast problem %.300q: %q, want %q…: %q", err, last.Element, last.Msg, tt.want.Element, tt.want.Msg)
			}
			if len(last.Element) > 300 {
				t.Errorf("problem's element is %d bytes long; want it cut", len(last.Element))
			}
			if strings.Contains(tt.want.Msg, "unknown") && len(ps) != 1 {
				t.Errorf("Parse = %v, want only the unknown element", err)
			}
			if n := after.TotalAlloc - before.TotalAlloc; tt.maxAlloc > 0 && n > tt.maxAlloc {
				t.Errorf("Parse allocated %d MB, want at most %d MB", n>>20, tt.maxAlloc>>20)
			}
		})
	}
}
