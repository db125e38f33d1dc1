package testenv

import "testing"

// Chromium is the path of Debian's chromium browser, for tests that drive a
// real browser (see package internal/browsertest). When it is missing it is
// installed with apt-get if we are root, which can take a minute; otherwise
// the test fails with a message that says how to get it.
func Chromium(t testing.TB) string {
	t.Helper()
	p, err := binary("chromium", "chromium")
	if err != nil {
		t.Fatalf("testenv: %v\nthe browser tests need a real Chromium: apt-get install chromium", err)
	}
	return p
}
