package cap_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tocsin-alert/tocsin/cap"
)

// Every real document in testdata/ (copied byte for byte from public
// alerting authorities' feeds; see testdata/SOURCES.md) parses, and survives
// encode → parse unchanged.
func TestRealDocumentsParse(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.xml")
	if len(files) != 30 {
		t.Fatalf("%d valid fixtures, want 30", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			a, err := cap.Parse(b)
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			if a.Identifier == "" || a.Sent.IsZero() {
				t.Fatalf("parsed %+v", a)
			}
			out, err := cap.Encode(a)
			if err != nil {
				t.Fatal(err)
			}
			again, err := cap.Parse(out)
			if err != nil {
				t.Fatalf("Parse(Encode) = %v\n%s", err, out)
			}
			if out2, _ := cap.Encode(again); string(out2) != string(out) {
				t.Fatalf("encode → parse → encode differs")
			}
		})
	}
}

// Every invalid document is refused with a reason naming its fault. The two
// tampered-signature files are schema-valid: they fail signature checking
// (TestSignatures), not parsing.
func TestInvalidDocumentsRejected(t *testing.T) {
	want := map[string][]string{
		"missing-scope.xml":                             {"alert: <scope> is required"},
		"update-empty-references.xml":                   {"alert/references: required for msgType Update"},
		"nws-empty-required-values-cap11.xml":           {"namespace", "urgency", "polygon"},
		"wrong-namespace.xml":                           {"namespace \"urn:oasis:names:tc:emergency:alerts:1.2\""},
		"belize-missing-sender-signed.xml":              {"<sender> is required"},
		"cameroon-missing-status-signed.xml":            {"<status> is required"},
		"xxe-external-entities-thunderstorm.xml":        {"DOCTYPE"},
		"bad-datetime-no-offset-empty-circle-cap11.xml": {"alert/sent", "circle"},
		"belize-tampered-signaturevalue.xml":            nil,
		"cameroon-tampered-digestvalue.xml":             nil,
	}
	files, _ := filepath.Glob("testdata/invalid/*.xml")
	if len(files) != len(want) {
		t.Fatalf("%d invalid fixtures, want %d", len(files), len(want))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			b, _ := os.ReadFile(f)
			frags, ok := want[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			_, err := cap.Parse(b)
			if frags == nil {
				if err != nil {
					t.Fatalf("Parse = %v; want it schema-valid (only its signature is bad)", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Parse = nil, want a rejection")
			}
			for _, w := range frags {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestStrictXML(t *testing.T) {
	valid, _ := os.ReadFile("testdata/oasis-example-a2-thunderstorm-warning.xml")
	for _, tt := range []struct {
		name, doc, want string
	}{
		{"second root", string(valid) + "<alert/>", "second root"},
		{"duplicate identifier", strings.Replace(string(valid), "<sender>", "<identifier>x</identifier><sender>", 1), "alert/identifier: appears more than once"},
		{"Z instead of -00:00", strings.Replace(string(valid), "<sent>2003-06-17T14:57:00-07:00</sent>", "<sent>2003-06-17T21:57:00Z</sent>", 1), "alert/sent"},
		{"identifier with a space", strings.Replace(string(valid), "<identifier>", "<identifier>a b", 1), "alert/identifier: must not contain"},
		{"open polygon", strings.Replace(string(valid), " 38.47,-120.14</polygon>", " 38.47,-120.15</polygon>", 1), "not closed"},
		{"unknown element", strings.Replace(string(valid), "<scope>", "<colour>red</colour><scope>", 1), "alert/colour: unknown element"},
		{"bad enumeration", strings.Replace(string(valid), "<urgency>Immediate</urgency>", "<urgency>Now</urgency>", 1), "\"Now\" is not one of"},
		{"too large", string(valid) + strings.Repeat(" ", cap.MaxSize), "larger than"},
		{"unsupported encoding", strings.Replace(string(valid), `<?xml version = "1.0" encoding = "UTF-8"?>`, `<?xml version="1.0" encoding="UTF-16"?>`, 1), "UTF-16"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.doc == string(valid) {
				t.Fatal("replacement did not apply")
			}
			_, err := cap.Parse([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// Encodings as declared: ISO-8859-1 bytes come out as UTF-8 text; a UTF-8
// BOM is not part of the document.
func TestEncodings(t *testing.T) {
	for file, want := range map[string]string{
		"testdata/usgs-earthquake-iso8859-1-signed.xml": "Usulután",
		"testdata/taiwan-wra-reservoir-zh-utf8-bom.xml": "水庫",
	} {
		b, _ := os.ReadFile(file)
		a, err := cap.Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var all strings.Builder
		for _, in := range a.Infos {
			all.WriteString(in.Headline + in.Description + in.Event)
			for _, ar := range in.Areas {
				all.WriteString(ar.AreaDesc)
			}
		}
		if !strings.Contains(all.String(), want) {
			t.Errorf("%s: text lacks %q", file, want)
		}
	}
}
