package testenv

import (
	"os/exec"
	"strings"
	"testing"
)

func TestChromium(t *testing.T) {
	p := Chromium(t)
	out, err := exec.Command(p, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", p, err)
	}
	if !strings.Contains(string(out), "Chromium") {
		t.Fatalf("%s --version printed %q, want a Chromium version", p, out)
	}
	t.Logf("%s: %s", p, strings.TrimSpace(string(out)))
}
