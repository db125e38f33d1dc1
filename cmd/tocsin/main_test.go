package main

import (
	"bytes"
	"strings"
	"testing"
)

// --help exits 0 for every command (and prints its usage), --version says
// which build this is, an unknown command is a usage error (2), and
// config check --help never opens a file named --help.
func TestHelpAndVersion(t *testing.T) {
	for _, argv := range [][]string{
		{"--help"}, {"help"}, {"send", "--help"}, {"retract", "-h"}, {"watch", "--help"}, {"status", "--help"},
		{"maintenance", "--help"}, {"audit", "verify", "--help"}, {"config", "check", "--help"}, {"config", "--help"},
		{"operator", "invite", "--help"},
	} {
		var out, errb bytes.Buffer
		if code := run(argv, &out, &errb); code != 0 {
			t.Errorf("tocsin %s = exit %d (%s%s), want 0", strings.Join(argv, " "), code, out.String(), errb.String())
		}
	}
	var out bytes.Buffer
	if code := run([]string{"--version"}, &out, &out); code != 0 || !strings.HasPrefix(out.String(), "tocsin ") {
		t.Errorf("--version = %d %q", code, out.String())
	}
	if code := run([]string{"frobnicate"}, &out, &out); code != 2 {
		t.Errorf("unknown command = exit %d, want 2", code)
	}
	if code := run(nil, &out, &out); code != 2 {
		t.Errorf("no command = exit %d, want 2", code)
	}
}
