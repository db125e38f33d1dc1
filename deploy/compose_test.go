// Package deploy_test checks the deployment files as an administrator
// would use them: no container runtime runs here, so the compose file is
// loaded with compose-go (as docker compose loads it) and every file,
// user and path it relies on is checked against the others.
package deploy_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/tocsin-alert/tocsin/config"
)

// The compose file starts as written: with the variables its header says to
// set it loads, every file it mounts exists, the gateway's configuration is
// valid with exactly the environment compose gives it, the broker user it
// logs in as is one the broker's start creates, and the paths the images,
// the Mosquitto configuration and the ACL name line up.
func TestComposeStartsAsWritten(t *testing.T) {
	for _, v := range []string{"TOCSIN_KEY_LEITSTELLE", "TOCSIN_KEY_OPERATOR", "TOCSIN_TRIGGER_SCHOOL_BUTTON_KEY", "TOCSIN_MQTT_PASSWORD"} {
		t.Setenv(v, "compose-test-secret-"+strings.ToLower(v))
	}
	t.Setenv("TOCSIN_MQTT_DEVICES", "school-north:pw1 school-south:pw2")
	header, _ := os.ReadFile("compose.yaml")
	for _, v := range []string{"TOCSIN_KEY_LEITSTELLE", "TOCSIN_KEY_OPERATOR", "TOCSIN_TRIGGER_SCHOOL_BUTTON_KEY", "TOCSIN_MQTT_PASSWORD", "TOCSIN_MQTT_DEVICES"} {
		if !strings.Contains(string(header), "#   export "+v) && !strings.Contains(string(header), " "+v+"=") {
			t.Errorf("compose.yaml's header does not say to set %s", v)
		}
	}
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"}, cli.WithOsEnv, cli.WithWorkingDirectory("."))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v", err)
	}
	for _, name := range p.ServiceNames() {
		for _, v := range p.Services[name].Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("service %s mounts %s, which does not exist", name, v.Source)
				}
			}
		}
	}
	gw, mq := p.Services["tocsin"], p.Services["mosquitto"]
	mount := func(s types.ServiceConfig, target string) string {
		for _, v := range s.Volumes {
			if v.Target == target {
				return v.Source
			}
		}
		t.Fatalf("service %s mounts nothing at %s", s.Name, target)
		return ""
	}
	// The gateway's configuration, with exactly compose's environment.
	for _, k := range []string{"TOCSIN_LISTEN", "TOCSIN_REDIS_ADDRS", "TOCSIN_MQTT_BROKER", "TOCSIN_INSECURE_PLAINTEXT"} {
		t.Setenv(k, "")
	}
	for k, v := range gw.Environment {
		if v != nil {
			t.Setenv(k, *v)
		}
	}
	docker, _ := os.ReadFile("Dockerfile")
	confPath := regexp.MustCompile(`"--config", "([^"]+)"`).FindSubmatch(docker)
	if confPath == nil {
		t.Fatal("the Dockerfile's CMD names no --config")
	}
	cfg, err := config.Load(mount(gw, string(confPath[1])))
	if err != nil {
		t.Fatalf("the gateway's configuration with compose's environment: %v", err)
	}
	if _, port, _ := strings.Cut(cfg.Listen, ":"); len(gw.Ports) == 0 || gw.Ports[0].Target != 8080 || port != "8080" {
		t.Errorf("the gateway listens on %s and publishes %v; want 8080 both", cfg.Listen, gw.Ports)
	}
	for _, addr := range cfg.Redis.Addrs {
		if host, _, _ := strings.Cut(addr, ":"); p.Services[host].Name == "" {
			t.Errorf("redis address %s is no compose service", addr)
		}
	}
	// The broker creates the gateway's user from the same password.
	script := strings.Join(mq.Entrypoint, " ")
	pw := regexp.MustCompile(`password_file (\S+)`).FindStringSubmatch(string(must(t, mount(mq, "/mosquitto/config/mosquitto.conf"))))
	if pw == nil || !strings.Contains(script, "mosquitto_passwd -c -b "+pw[1]+" "+cfg.MQTT.Username+` "$TOCSIN_MQTT_PASSWORD"`) {
		t.Errorf("the broker's start does not create user %q in its password file %v:\n%s", cfg.MQTT.Username, pw, script)
	}
	if *mq.Environment["TOCSIN_MQTT_PASSWORD"] != cfg.MQTT.Password() {
		t.Error("the broker and the gateway see different TOCSIN_MQTT_PASSWORD")
	}
	if !strings.Contains(script, "exec mosquitto -c /mosquitto/config/mosquitto.conf") {
		t.Errorf("the broker does not start with the mounted configuration:\n%s", script)
	}
	conf := string(must(t, mount(mq, "/mosquitto/config/mosquitto.conf")))
	acl := regexp.MustCompile(`(?m)^acl_file (\S+)`).FindStringSubmatch(conf)
	data := regexp.MustCompile(`(?m)^persistence_location (\S+?)/?$`).FindStringSubmatch(conf)
	if acl == nil || mount(mq, acl[1]) != mustAbs(t, "mosquitto.acl") {
		t.Errorf("the ACL file %v named in mosquitto.conf is not the mounted deploy/mosquitto.acl", acl)
	}
	if data == nil || !slices.ContainsFunc(mq.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == data[1] && v.Type == types.VolumeTypeVolume }) {
		t.Errorf("persistence_location %v is not on a volume: the broker's sessions would not outlive the container", data)
	}
}

func must(t *testing.T, f string) []byte {
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustAbs(t *testing.T, f string) string {
	a, err := filepath.Abs(f)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
