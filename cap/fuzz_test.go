package cap_test

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tocsin-alert/tocsin/cap"
)

// FuzzParse: no input makes Parse panic or hang, and whatever it accepts
// encodes and parses again. Seeds: every real document, valid and invalid,
// and one nested past MaxDepth.
func FuzzParse(f *testing.F) {
	for _, pat := range []string{"testdata/*.xml", "testdata/invalid/*.xml"} {
		files, _ := filepath.Glob(pat)
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(`<alert xmlns="` + cap.Namespace + `">` + strings.Repeat("<x>", cap.MaxDepth+1))) // past MaxDepth
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := cap.Parse(b)
		if err != nil {
			return
		}
		out, err := cap.Encode(a)
		if err != nil {
			t.Fatalf("Encode(accepted) = %v", err)
		}
		if _, err := cap.Parse(out); err != nil {
			t.Fatalf("Parse(Encode(accepted)) = %v\n%s", err, out)
		}
	})
}

// BenchmarkParse: strict parse of a small real document (the OASIS
// thunderstorm warning) and a large one (DWD, 8 languages, 154 KB), beside a
// bare xml.Unmarshal of the same bytes.
func BenchmarkParse(b *testing.B) {
	for _, f := range []string{"oasis-example-a2-thunderstorm-warning.xml", "dwd-starkregen-update-exclude-polygon-8-languages.xml"} {
		doc, err := os.ReadFile("testdata/" + f)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(f+"/tocsin", func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cap.Parse(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The ceiling: encoding/xml decoding the same bytes into the same
		// model, with no checks at all.
		b.Run(f+"/xml-unmarshal", func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				var a cap.Alert
				if err := xml.Unmarshal(doc, &a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
