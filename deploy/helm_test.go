//go:build helm

package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tocsin-alert/tocsin/config"
)

// The Helm chart, as `make deploy-check` runs it (helm built from its
// module, since Debian has no package): `helm lint --strict`, then the
// rendered manifests checked against each other and against Tocsin — the
// configuration the ConfigMap carries loads with exactly the environment
// the Deployment gives it, probes point at /healthz and /readyz, the
// PodDisruptionBudget selects the gateway's pods, the broker address is the
// chart's Mosquitto, and the Mosquitto files are deploy/'s own.
func TestHelmChart(t *testing.T) {
	helm := os.Getenv("HELM")
	if helm == "" {
		t.Fatal("HELM must name the helm binary: run `make deploy-check`")
	}
	const chart = "helm/tocsin"
	if out, err := exec.Command(helm, "lint", "--strict", chart).CombinedOutput(); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(helm, "template", "alerts", chart)
	cmd.Stderr = &stderr // helm's notes (the files linked from deploy/) are not manifests
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr.String())
	}
	type obj = map[string]any
	byKind := map[string][]obj{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o obj
		if err := dec.Decode(&o); err != nil {
			break
		}
		if o != nil {
			byKind[o["kind"].(string)] = append(byKind[o["kind"].(string)], o)
		}
	}
	for _, k := range []string{"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "StatefulSet"} {
		if len(byKind[k]) == 0 {
			t.Fatalf("no %s rendered:\n%s", k, out)
		}
	}
	get := func(o any, path ...any) any {
		for _, p := range path {
			switch p := p.(type) {
			case string:
				o = o.(obj)[p]
			case int:
				o = o.([]any)[p]
			}
		}
		return o
	}
	dep := byKind["Deployment"][0]
	pod := get(dep, "spec", "template")
	c := get(pod, "spec", "containers", 0)
	if get(c, "livenessProbe", "httpGet", "path") != "/healthz" || get(c, "readinessProbe", "httpGet", "path") != "/readyz" {
		t.Errorf("probes: %v / %v", get(c, "livenessProbe"), get(c, "readinessProbe"))
	}
	if get(dep, "spec", "replicas") != 2 {
		t.Errorf("replicas %v; want 2 (a PodDisruptionBudget of minAvailable 1 needs two)", get(dep, "spec", "replicas"))
	}
	labels := get(pod, "metadata", "labels").(obj)
	for k, v := range get(byKind["PodDisruptionBudget"][0], "spec", "selector", "matchLabels").(obj) {
		if labels[k] != v {
			t.Errorf("the PodDisruptionBudget selects %s=%v; the gateway's pods have %v", k, v, labels[k])
		}
	}
	// The configuration as the pod sees it: the ConfigMap's file, with the
	// Deployment's environment and a value for every variable the Secret
	// must hold.
	var cm obj
	for _, o := range byKind["ConfigMap"] {
		if _, ok := get(o, "data").(obj)["tocsin.yaml"]; ok {
			cm = o
		}
	}
	file := get(cm, "data", "tocsin.yaml").(string)
	args := get(c, "args").([]any)
	if mount := get(c, "volumeMounts", 0, "mountPath").(string); !slices.Contains(args, any(mount+"/tocsin.yaml")) || get(pod, "spec", "volumes", 0, "configMap", "name") != get(cm, "metadata", "name") {
		t.Errorf("the gateway reads %v; the ConfigMap is mounted at %s", args, mount)
	}
	env := map[string]string{}
	for _, e := range get(c, "env").([]any) {
		env[get(e, "name").(string)] = get(e, "value").(string)
	}
	for _, m := range regexp.MustCompile(`_env: (\w+)`).FindAllStringSubmatch(file, -1) {
		env[m[1]] = "helm-test-secret-" + strings.ToLower(m[1])
	}
	for _, k := range []string{"TOCSIN_LISTEN", "TOCSIN_REDIS_ADDRS", "TOCSIN_MQTT_BROKER", "TOCSIN_INSECURE_PLAINTEXT"} {
		t.Setenv(k, "")
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	if _, err := config.Parse([]byte(file)); err != nil {
		t.Errorf("the chart's configuration with the pod's environment: %v", err)
	}
	sts := byKind["StatefulSet"][0]
	var svc obj
	for _, s := range byKind["Service"] {
		if strings.HasSuffix(get(s, "metadata", "name").(string), "-mosquitto") {
			svc = s
		}
	}
	if want := fmt.Sprintf("tcp://%s:1883", get(svc, "metadata", "name")); env["TOCSIN_MQTT_BROKER"] != want {
		t.Errorf("the gateway's broker %s; the chart's Mosquitto is %s", env["TOCSIN_MQTT_BROKER"], want)
	}
	// Mosquitto runs deploy/'s own files, at the paths they name.
	var mcm obj
	for _, o := range byKind["ConfigMap"] {
		if _, ok := get(o, "data").(obj)["mosquitto.conf"]; ok {
			mcm = o
		}
	}
	conf, _ := os.ReadFile("mosquitto.conf")
	acl, _ := os.ReadFile("mosquitto.acl")
	if strings.TrimSpace(get(mcm, "data", "mosquitto.conf").(string)) != strings.TrimSpace(string(conf)) || strings.TrimSpace(get(mcm, "data", "acl").(string)) != strings.TrimSpace(string(acl)) {
		t.Error("the chart's Mosquitto files differ from deploy/mosquitto.conf and mosquitto.acl")
	}
	mounts := map[string]bool{}
	for _, m := range get(sts, "spec", "template", "spec", "containers", 0, "volumeMounts").([]any) {
		mounts[get(m, "mountPath").(string)] = true
	}
	for _, re := range []string{`(?m)^password_file (\S+)`, `(?m)^acl_file (\S+)`, `(?m)^persistence_location (\S+?)/?$`} {
		if m := regexp.MustCompile(re).FindStringSubmatch(string(conf)); m == nil || !mounts[m[1]] {
			t.Errorf("mosquitto.conf names %v; the StatefulSet mounts %v", m, mounts)
		}
	}
	// Without the chart's broker, a broker must be named.
	if out, err := exec.Command(helm, "template", "alerts", chart, "--set", "mosquitto.enabled=false").CombinedOutput(); err == nil || !strings.Contains(string(out), "set mqtt.broker") {
		t.Errorf("helm template without a broker: %v\n%s", err, out)
	}
}
