package cap_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tocsin-alert/tocsin/cap"
)

// FuzzParse: no input makes Parse panic or hang, and whatever it accepts
// encodes and parses again. Seeds: every real document, valid and invalid.
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
