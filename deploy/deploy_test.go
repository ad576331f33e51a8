package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/segwarehouse/segwarehouse/internal/telemetry"
)

const (
	// helmPkg is the pinned Helm (the Makefile pins the same version).
	helmPkg = "helm.sh/helm/v3/cmd/helm@v3.22.0"
	// kubeVersion is the cluster version helm lint and template assume;
	// Helm built with `go run` would otherwise assume v1.20.
	kubeVersion = "1.33.0"
	chartDir    = "helm/segwarehouse"
	release     = "segwarehouse"
	namespace   = "loaders"

	// Values every valid rendering starts from.
	baseValues = `
database:
  existingSecret: warehouse-credentials
  secretKey: dsn
kafka:
  brokers: [kafka-0.kafka:9092, kafka-1.kafka:9092]
  topics: [web, ios]
  group: loaders
partitions: 12
`
)

// helmCmd is the command that runs the pinned Helm: the executable that
// `go run` builds and caches (found with `go run -exec echo`), so that each
// call costs an exec rather than a module resolution; or `go run` itself
// when the build cache does not keep executables. The first call downloads
// and compiles Helm, hence the generous timeout.
var helmCmd = sync.OnceValues(func() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "run", "-exec", "echo", helmPkg)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go run %s: %w\n%s", helmPkg, err, stderr.String())
	}
	bin := strings.TrimSpace(string(out))
	if err := exec.CommandContext(ctx, bin, "version", "--short").Run(); err == nil {
		return []string{bin}, nil
	}
	return []string{"go", "run", helmPkg}, nil
})

// runHelm runs the pinned Helm with HELM_*_HOME in a temporary directory.
func runHelm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	prefix, err := helmCmd()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prefix[0], append(prefix[1:], args...)...)
	home := t.TempDir()
	// Keep Helm away from the user's repositories and plugins.
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// helm runs Helm with the given values (a YAML document) and returns its
// output, or the error and stderr.
func helm(t *testing.T, values string, args ...string) (string, string, error) {
	t.Helper()
	if values != "" {
		// Not under t.TempDir: a subtest name may hold a comma, and Helm
		// splits --values at commas.
		dir, err := os.MkdirTemp("", "segwh-helm-values")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		f := filepath.Join(dir, "values.yaml")
		if err := os.WriteFile(f, []byte(values), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--values", f)
	}
	return runHelm(t, args...)
}

func helmTemplate(t *testing.T, values string) (string, string, error) {
	t.Helper()
	return helm(t, values, "template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion)
}

// merge joins YAML value documents, later ones winning (deeply).
func merge(t *testing.T, docs ...string) string {
	t.Helper()
	out := map[string]any{}
	for _, d := range docs {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			t.Fatalf("values %q: %v", d, err)
		}
		mergeInto(out, m)
	}
	b, err := yaml.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				mergeInto(dv, sv)
				continue
			}
		}
		dst[k] = v
	}
}

// rendered holds the objects of one `helm template`, each decoded strictly
// into its Kubernetes type; custom resources as maps.
type rendered struct {
	deployments     []appsv1.Deployment
	statefulSets    []appsv1.StatefulSet
	configMaps      []corev1.ConfigMap
	secrets         []corev1.Secret
	services        []corev1.Service
	serviceAccounts []corev1.ServiceAccount
	pdbs            []policyv1.PodDisruptionBudget
	netpols         []networkingv1.NetworkPolicy
	hpas            []autoscalingv2.HorizontalPodAutoscaler
	custom          map[string][]map[string]any // by kind
}

// apiVersions is the API version each kind the chart renders must have.
var apiVersions = map[string]string{
	"Deployment":              "apps/v1",
	"StatefulSet":             "apps/v1",
	"ConfigMap":               "v1",
	"Secret":                  "v1",
	"Service":                 "v1",
	"ServiceAccount":          "v1",
	"PodDisruptionBudget":     "policy/v1",
	"NetworkPolicy":           "networking.k8s.io/v1",
	"HorizontalPodAutoscaler": "autoscaling/v2",
	"ScaledObject":            "keda.sh/v1alpha1",
	"ServiceMonitor":          "monitoring.coreos.com/v1",
	"PrometheusRule":          "monitoring.coreos.com/v1",
}

// decodeAll splits a multi-document YAML stream and decodes each object
// with unknown and duplicate fields refused.
func decodeAll(t *testing.T, manifest string) *rendered {
	t.Helper()
	r := &rendered{custom: map[string][]map[string]any{}}
	rd := k8syaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading rendered YAML: %v", err)
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("rendered document is not YAML: %v\n%s", err, doc)
		}
		if head.Kind == "" {
			continue // an empty document (a template rendered nothing)
		}
		if want, ok := apiVersions[head.Kind]; !ok {
			t.Fatalf("rendered an unexpected kind %s: teach the test about it", head.Kind)
		} else if head.APIVersion != want {
			t.Errorf("%s has apiVersion %s, want %s", head.Kind, head.APIVersion, want)
		}
		strict := func(v any) {
			t.Helper()
			if err := yaml.UnmarshalStrict(doc, v); err != nil {
				t.Fatalf("%s does not decode strictly into %T: %v\n%s", head.Kind, v, err, doc)
			}
		}
		switch head.Kind {
		case "Deployment":
			var o appsv1.Deployment
			strict(&o)
			r.deployments = append(r.deployments, o)
		case "StatefulSet":
			var o appsv1.StatefulSet
			strict(&o)
			r.statefulSets = append(r.statefulSets, o)
		case "ConfigMap":
			var o corev1.ConfigMap
			strict(&o)
			r.configMaps = append(r.configMaps, o)
		case "Secret":
			var o corev1.Secret
			strict(&o)
			r.secrets = append(r.secrets, o)
		case "Service":
			var o corev1.Service
			strict(&o)
			r.services = append(r.services, o)
		case "ServiceAccount":
			var o corev1.ServiceAccount
			strict(&o)
			r.serviceAccounts = append(r.serviceAccounts, o)
		case "PodDisruptionBudget":
			var o policyv1.PodDisruptionBudget
			strict(&o)
			r.pdbs = append(r.pdbs, o)
		case "NetworkPolicy":
			var o networkingv1.NetworkPolicy
			strict(&o)
			r.netpols = append(r.netpols, o)
		case "HorizontalPodAutoscaler":
			var o autoscalingv2.HorizontalPodAutoscaler
			strict(&o)
			r.hpas = append(r.hpas, o)
		default:
			var o map[string]any
			strict(&o)
			r.custom[head.Kind] = append(r.custom[head.Kind], o)
		}
	}
	return r
}

// workload is what the Deployment and the StatefulSet share.
type workload struct {
	kind, name string
	replicas   *int32
	pod        corev1.PodTemplateSpec
	selector   map[string]string
}

func (r *rendered) workload(t *testing.T) workload {
	t.Helper()
	if n := len(r.deployments) + len(r.statefulSets); n != 1 {
		t.Fatalf("rendered %d Deployments and %d StatefulSets, want exactly one workload", len(r.deployments), len(r.statefulSets))
	}
	if len(r.deployments) == 1 {
		d := r.deployments[0]
		return workload{"Deployment", d.Name, d.Spec.Replicas, d.Spec.Template, d.Spec.Selector.MatchLabels}
	}
	s := r.statefulSets[0]
	return workload{"StatefulSet", s.Name, s.Spec.Replicas, s.Spec.Template, s.Spec.Selector.MatchLabels}
}

func (r *rendered) configMap(t *testing.T) corev1.ConfigMap {
	t.Helper()
	if len(r.configMaps) != 1 {
		t.Fatalf("rendered %d ConfigMaps, want 1", len(r.configMaps))
	}
	return r.configMaps[0]
}

func (r *rendered) one(t *testing.T, kind string) map[string]any {
	t.Helper()
	if len(r.custom[kind]) != 1 {
		t.Fatalf("rendered %d %s, want 1", len(r.custom[kind]), kind)
	}
	return r.custom[kind][0]
}

// get walks a decoded custom resource: get(m, "spec", "triggers", 0, "type").
func get(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: %T is not an object", path, v)
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				t.Fatalf("at %v: %v is not a list with index %d", path, v, k)
			}
			v = s[k]
		}
	}
	return v
}

func container(t *testing.T, w workload) corev1.Container {
	t.Helper()
	for _, c := range w.pod.Spec.Containers {
		if c.Name == "segwarehouse" {
			return c
		}
	}
	t.Fatalf("%s %s has no container named segwarehouse", w.kind, w.name)
	return corev1.Container{}
}

func envVar(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// checkInvariants asserts what holds for every valid rendering.
func checkInvariants(t *testing.T, r *rendered, secrets []string) {
	t.Helper()
	w := r.workload(t)
	c := container(t, w)
	cm := r.configMap(t)
	podLabels := labels.Set(w.pod.Labels)
	if !labels.SelectorFromSet(w.selector).Matches(podLabels) {
		t.Errorf("%s selector %v does not match its pod labels %v", w.kind, w.selector, w.pod.Labels)
	}

	// The HTTP port: SEGWH_HTTP_ADDR, the container port and the probes agree.
	var httpPort int32
	for _, p := range c.Ports {
		if p.Name == "http" {
			httpPort = p.ContainerPort
		}
	}
	if httpPort == 0 {
		t.Fatalf("container has no port named http: %+v", c.Ports)
	}
	if want := fmt.Sprintf(":%d", httpPort); cm.Data["SEGWH_HTTP_ADDR"] != want {
		t.Errorf("SEGWH_HTTP_ADDR = %q, want %q (the container port)", cm.Data["SEGWH_HTTP_ADDR"], want)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe missing or not HTTP", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != intstr.FromString("http") {
			t.Errorf("%s probe is %s on %s, want %s on port http", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}

	// Security: non-root, read-only root, no capabilities, seccomp.
	sc := c.SecurityContext
	psc := w.pod.Spec.SecurityContext
	if sc == nil || psc == nil {
		t.Fatal("container or pod securityContext missing")
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("runAsNonRoot is not true on both the pod and the container")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Error("container runAsUser is unset or root")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities = %+v, want drop ALL and add none", sc.Capabilities)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("container seccompProfile is not RuntimeDefault")
	}
	if w.pod.Spec.AutomountServiceAccountToken == nil || *w.pod.Spec.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token it never uses")
	}

	// Shutdown: the grace period outlasts the final flush.
	shutdown, err := time.ParseDuration(cm.Data["SEGWH_SHUTDOWN_TIMEOUT"])
	if err != nil {
		t.Fatalf("SEGWH_SHUTDOWN_TIMEOUT: %v", err)
	}
	grace := w.pod.Spec.TerminationGracePeriodSeconds
	if grace == nil || time.Duration(*grace)*time.Second <= shutdown || *grace <= 25 {
		t.Errorf("terminationGracePeriodSeconds = %v, want more than SEGWH_SHUTDOWN_TIMEOUT (%s) and 25s", grace, shutdown)
	}

	// Resources for a ~256 MiB working set.
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Memory().Cmp(resource.MustParse("256Mi")) < 0 || req.Cpu().IsZero() {
		t.Errorf("requests = %v, want cpu set and memory >= 256Mi", req)
	}
	if lim.Memory().IsZero() || lim.Memory().Cmp(*req.Memory()) < 0 {
		t.Errorf("memory limit %v is missing or below the request %v", lim.Memory(), req.Memory())
	}

	// Configuration: the ConfigMap through envFrom, secrets through
	// secretKeyRef only.
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != cm.Name {
		t.Errorf("envFrom = %+v, want the ConfigMap %s", c.EnvFrom, cm.Name)
	}
	for _, name := range []string{"SEGWH_DATABASE_URL", "SEGWH_KAFKA_SASL_PASSWORD"} {
		if _, ok := cm.Data[name]; ok {
			t.Errorf("ConfigMap holds the secret %s", name)
		}
	}
	userinfo := regexp.MustCompile(`://[^/@\s]*:[^/@\s]*@`)
	for k, v := range cm.Data {
		if !strings.HasPrefix(k, "SEGWH_") {
			t.Errorf("ConfigMap key %s is not a SEGWH_ variable", k)
		}
		if userinfo.MatchString(v) {
			t.Errorf("ConfigMap %s = %q holds a URL with a password", k, v)
		}
		for _, s := range secrets {
			if strings.Contains(v, s) {
				t.Errorf("ConfigMap %s contains the secret %q", k, s)
			}
		}
	}
	db, ok := envVar(c, "SEGWH_DATABASE_URL")
	if !ok || db.Value != "" || db.ValueFrom == nil || db.ValueFrom.SecretKeyRef == nil {
		t.Fatalf("SEGWH_DATABASE_URL = %+v, want a secretKeyRef", db)
	}
	for _, e := range c.Env {
		for _, s := range secrets {
			if strings.Contains(e.Value, s) {
				t.Errorf("env %s holds the secret %q in plain text", e.Name, s)
			}
		}
	}

	// The metrics Service and the PDB select the pods.
	var metricsSvc *corev1.Service
	for i, s := range r.services {
		if s.Labels["app.kubernetes.io/component"] == "metrics" {
			metricsSvc = &r.services[i]
		}
	}
	if metricsSvc == nil {
		t.Fatal("no metrics Service")
	}
	if !labels.SelectorFromSet(metricsSvc.Spec.Selector).Matches(podLabels) {
		t.Errorf("metrics Service selector %v does not match the pods", metricsSvc.Spec.Selector)
	}
	if len(metricsSvc.Spec.Ports) != 1 || metricsSvc.Spec.Ports[0].TargetPort != intstr.FromString("http") {
		t.Errorf("metrics Service ports = %+v, want one targeting http", metricsSvc.Spec.Ports)
	}
	if len(r.pdbs) != 1 {
		t.Fatalf("rendered %d PodDisruptionBudgets, want 1", len(r.pdbs))
	}
	pdb := r.pdbs[0]
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil {
		t.Errorf("PDB maxUnavailable = %v minAvailable = %v, want maxUnavailable 1", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}
	if !labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(podLabels) {
		t.Error("PDB does not select the pods")
	}
	if len(r.serviceAccounts) != 1 || r.serviceAccounts[0].Name != w.pod.Spec.ServiceAccountName {
		t.Errorf("ServiceAccount %v is not the pod's %q", r.serviceAccounts, w.pod.Spec.ServiceAccountName)
	}

	// NetworkPolicy: ingress to http only; egress to DNS, Kafka, Postgres.
	if len(r.netpols) != 1 {
		t.Fatalf("rendered %d NetworkPolicies, want 1", len(r.netpols))
	}
	np := r.netpols[0]
	if !labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(podLabels) {
		t.Error("NetworkPolicy does not select the pods")
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("NetworkPolicy policyTypes = %v, want Ingress and Egress", np.Spec.PolicyTypes)
	}
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].Ports) != 1 || *np.Spec.Ingress[0].Ports[0].Port != intstr.FromString("http") {
		t.Errorf("NetworkPolicy ingress = %+v, want only the http port", np.Spec.Ingress)
	}
	for _, want := range []struct {
		port  int
		proto corev1.Protocol
	}{{53, corev1.ProtocolUDP}, {53, corev1.ProtocolTCP}, {9092, corev1.ProtocolTCP}, {5432, corev1.ProtocolTCP}} {
		if !egressAllows(np, want.port, want.proto) {
			t.Errorf("NetworkPolicy egress does not allow %d/%s", want.port, want.proto)
		}
	}

	checkAutoscaling(t, r, w, cm)
}

func egressAllows(np networkingv1.NetworkPolicy, port int, proto corev1.Protocol) bool {
	for _, rule := range np.Spec.Egress {
		for _, p := range rule.Ports {
			if p.Port != nil && p.Port.IntValue() == port && p.Protocol != nil && *p.Protocol == proto {
				return true
			}
		}
	}
	return false
}

// checkAutoscaling: one owner of the replica count, pods <= partitions.
func checkAutoscaling(t *testing.T, r *rendered, w workload, cm corev1.ConfigMap) {
	t.Helper()
	scaled := len(r.custom["ScaledObject"]) + len(r.hpas)
	if scaled > 1 {
		t.Fatalf("both a ScaledObject and an HPA rendered")
	}
	if scaled == 1 && w.replicas != nil {
		t.Errorf("%s sets replicas %d although an autoscaler owns them", w.kind, *w.replicas)
	}
	if scaled == 0 && w.replicas == nil {
		t.Errorf("%s sets no replicas and no autoscaler is rendered", w.kind)
	}
	if len(r.custom["ScaledObject"]) == 1 {
		so := r.one(t, "ScaledObject")
		if get(t, so, "spec", "scaleTargetRef", "kind") != w.kind || get(t, so, "spec", "scaleTargetRef", "name") != w.name {
			t.Errorf("ScaledObject targets %v, want %s %s", get(t, so, "spec", "scaleTargetRef"), w.kind, w.name)
		}
		minR, _ := get(t, so, "spec", "minReplicaCount").(float64)
		maxR, _ := get(t, so, "spec", "maxReplicaCount").(float64)
		if maxR != 12 || minR < 0 || minR > maxR {
			t.Errorf("ScaledObject replicas %v..%v, want min <= max = 12 (partitions)", minR, maxR)
		}
		triggers, _ := get(t, so, "spec", "triggers").([]any)
		var topics []string
		for i := range triggers {
			md := get(t, triggers[i], "metadata")
			if get(t, triggers[i], "type") != "kafka" {
				t.Errorf("trigger %d is not kafka", i)
			}
			if get(t, md, "bootstrapServers") != cm.Data["SEGWH_KAFKA_BROKERS"] || get(t, md, "consumerGroup") != cm.Data["SEGWH_KAFKA_GROUP"] {
				t.Errorf("trigger %d reads %v/%v, want the loader's brokers %s and group %s", i,
					get(t, md, "bootstrapServers"), get(t, md, "consumerGroup"), cm.Data["SEGWH_KAFKA_BROKERS"], cm.Data["SEGWH_KAFKA_GROUP"])
			}
			lt, ok := get(t, md, "lagThreshold").(string)
			if n, err := strconv.Atoi(lt); !ok || err != nil || n <= 0 {
				t.Errorf("trigger %d lagThreshold %v is not a positive integer string", i, get(t, md, "lagThreshold"))
			}
			if get(t, md, "allowIdleConsumers") != "false" {
				t.Errorf("trigger %d allows idle consumers (pods beyond partitions)", i)
			}
			topic, _ := get(t, md, "topic").(string)
			topics = append(topics, topic)
		}
		if want := strings.Split(cm.Data["SEGWH_KAFKA_TOPICS"], ","); !slices.Equal(topics, want) {
			t.Errorf("ScaledObject triggers cover topics %v, want %v", topics, want)
		}
	}
	if len(r.hpas) == 1 {
		h := r.hpas[0]
		if h.Spec.ScaleTargetRef.Kind != w.kind || h.Spec.ScaleTargetRef.Name != w.name {
			t.Errorf("HPA targets %+v, want %s %s", h.Spec.ScaleTargetRef, w.kind, w.name)
		}
		if h.Spec.MaxReplicas != 12 || h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			t.Errorf("HPA replicas %v..%d, want 1 <= min <= max = 12 (partitions)", h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		if len(h.Spec.Metrics) != 1 || h.Spec.Metrics[0].External == nil {
			t.Fatalf("HPA metrics = %+v, want one External metric", h.Spec.Metrics)
		}
		ext := h.Spec.Metrics[0].External
		if _, ok := exported()[ext.Metric.Name]; !ok {
			t.Errorf("HPA scales on %s, which the binary does not export", ext.Metric.Name)
		}
		if ext.Target.Type != autoscalingv2.AverageValueMetricType || ext.Target.AverageValue == nil || ext.Target.AverageValue.Sign() <= 0 {
			t.Errorf("HPA target = %+v, want a positive AverageValue", ext.Target)
		}
	}
}

func TestHelmLintAndTemplate(t *testing.T) {
	t.Parallel()
	if _, err := helmCmd(); err != nil {
		t.Fatal(err)
	}

	for _, values := range []string{
		baseValues,
		merge(t, baseValues, `{staticMembership: true, serviceMonitor: {enabled: true}, prometheusRule: {enabled: true}, otel: {endpoint: "http://otel-collector.observability:4317"}}`),
	} {
		out, stderr, err := helm(t, values, "lint", "--strict", chartDir, "--kube-version", kubeVersion)
		if err != nil || !strings.Contains(out, "0 chart(s) failed") {
			t.Fatalf("helm lint --strict: %v\n%s%s", err, out, stderr)
		}
	}

	tests := []struct {
		name    string
		values  string
		secrets []string // strings that must appear in no ConfigMap or plain env
		check   func(t *testing.T, r *rendered)
	}{{
		name:   "defaults with an existing database secret",
		values: baseValues,
		check: func(t *testing.T, r *rendered) {
			w := r.workload(t)
			if w.kind != "Deployment" {
				t.Fatalf("workload is a %s, want a Deployment", w.kind)
			}
			ru := r.deployments[0].Spec.Strategy.RollingUpdate
			if ru == nil || ru.MaxUnavailable.IntValue() != 1 || ru.MaxSurge.IntValue() != 0 {
				t.Errorf("rolling update = %+v, want maxUnavailable 1, maxSurge 0", ru)
			}
			c := container(t, w)
			ref := mustEnv(t, c, "SEGWH_DATABASE_URL").ValueFrom.SecretKeyRef
			if ref.Name != "warehouse-credentials" || ref.Key != "dsn" {
				t.Errorf("SEGWH_DATABASE_URL from %s/%s, want warehouse-credentials/dsn", ref.Name, ref.Key)
			}
			for _, name := range []string{"SEGWH_KAFKA_INSTANCE_ID", "SEGWH_KAFKA_SASL_PASSWORD", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
				if _, ok := envVar(c, name); ok {
					t.Errorf("%s is set by default", name)
				}
			}
			if len(r.secrets) != 0 {
				t.Errorf("rendered %d Secrets; with existing secrets the chart must create none", len(r.secrets))
			}
			cm := r.configMap(t)
			for k, want := range map[string]string{
				"SEGWH_KAFKA_BROKERS": "kafka-0.kafka:9092,kafka-1.kafka:9092",
				"SEGWH_KAFKA_TOPICS":  "web,ios",
				"SEGWH_KAFKA_GROUP":   "loaders",
				"SEGWH_LOG_FORMAT":    "json",
			} {
				if cm.Data[k] != want {
					t.Errorf("ConfigMap %s = %q, want %q", k, cm.Data[k], want)
				}
			}
			if len(r.custom["ScaledObject"]) != 1 || len(r.hpas) != 0 {
				t.Errorf("KEDA is the default autoscaler: got %d ScaledObjects, %d HPAs", len(r.custom["ScaledObject"]), len(r.hpas))
			}
			if len(r.custom["ServiceMonitor"])+len(r.custom["PrometheusRule"]) != 0 {
				t.Error("ServiceMonitor or PrometheusRule rendered although not enabled")
			}
		},
	}, {
		name:   "static membership",
		values: merge(t, baseValues, `{staticMembership: true}`),
		check: func(t *testing.T, r *rendered) {
			w := r.workload(t)
			if w.kind != "StatefulSet" {
				t.Fatalf("workload is a %s, want a StatefulSet", w.kind)
			}
			id := mustEnv(t, container(t, w), "SEGWH_KAFKA_INSTANCE_ID")
			if id.ValueFrom == nil || id.ValueFrom.FieldRef == nil || id.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Errorf("SEGWH_KAFKA_INSTANCE_ID = %+v, want the pod name (fieldRef metadata.name)", id)
			}
			governing := r.statefulSets[0].Spec.ServiceName
			var found bool
			for _, s := range r.services {
				if s.Name == governing {
					found = s.Spec.ClusterIP == corev1.ClusterIPNone
				}
			}
			if !found {
				t.Errorf("no headless Service %q governs the StatefulSet", governing)
			}
			if get(t, r.one(t, "ScaledObject"), "spec", "scaleTargetRef", "kind") != "StatefulSet" {
				t.Error("ScaledObject does not scale the StatefulSet")
			}
		},
	}, {
		name:   "hpa instead of keda",
		values: merge(t, baseValues, `{autoscaling: {keda: {enabled: false}, hpa: {enabled: true}}}`),
		check: func(t *testing.T, r *rendered) {
			if len(r.hpas) != 1 || len(r.custom["ScaledObject"]) != 0 {
				t.Errorf("got %d HPAs and %d ScaledObjects, want one HPA only", len(r.hpas), len(r.custom["ScaledObject"]))
			}
		},
	}, {
		name:   "fixed replicas",
		values: merge(t, baseValues, `{replicaCount: 3, autoscaling: {keda: {enabled: false}}}`),
		check: func(t *testing.T, r *rendered) {
			if w := r.workload(t); w.replicas == nil || *w.replicas != 3 {
				t.Errorf("replicas = %v, want 3", w.replicas)
			}
		},
	}, {
		name: "serviceMonitor, prometheusRule and OTLP on",
		values: merge(t, baseValues, `
serviceMonitor: {enabled: true, labels: {release: kube-prometheus}}
prometheusRule: {enabled: true}
otel: {endpoint: "http://otel-collector.observability:4318", serviceName: loader}
`),
		check: func(t *testing.T, r *rendered) {
			sm := r.one(t, "ServiceMonitor")
			sel, _ := get(t, sm, "spec", "selector", "matchLabels").(map[string]any)
			var matched []corev1.Service
			for _, s := range r.services {
				ok := len(sel) > 0
				for k, v := range sel {
					ok = ok && s.Labels[k] == v
				}
				if ok {
					matched = append(matched, s)
				}
			}
			if len(matched) != 1 {
				t.Fatalf("ServiceMonitor selects %d Services, want exactly the metrics one", len(matched))
			}
			if port := get(t, sm, "spec", "endpoints", 0, "port"); port != matched[0].Spec.Ports[0].Name {
				t.Errorf("ServiceMonitor scrapes port %v, the Service names it %s", port, matched[0].Spec.Ports[0].Name)
			}
			if get(t, sm, "spec", "endpoints", 0, "path") != "/metrics" {
				t.Error("ServiceMonitor does not scrape /metrics")
			}
			if get(t, sm, "metadata", "labels", "release") != "kube-prometheus" {
				t.Error("serviceMonitor.labels not applied")
			}

			alerts := map[string]string{}
			for _, g := range get(t, r.one(t, "PrometheusRule"), "spec", "groups").([]any) {
				for _, rule := range get(t, g, "rules").([]any) {
					name, _ := get(t, rule, "alert").(string)
					expr, _ := get(t, rule, "expr").(string)
					alerts[name] = expr
					if sev := get(t, rule, "labels", "severity"); sev == nil {
						t.Errorf("alert %s has no severity", name)
					}
					if !strings.Contains(expr, `job="segwarehouse", namespace="loaders"`) {
						t.Errorf("alert %s does not select this release's series: %s", name, expr)
					}
				}
			}
			for name, metric := range map[string]string{
				"SegwarehouseLagGrowing":     "segwarehouse_consumer_lag",
				"SegwarehouseFlushesFailing": "segwarehouse_flushes_total",
				"SegwarehouseRetries":        "segwarehouse_retries_total",
				"SegwarehouseNotReady":       "segwarehouse_ready",
				"SegwarehouseRejects":        "segwarehouse_rejected_total",
			} {
				if !strings.Contains(alerts[name], metric) {
					t.Errorf("alert %s missing or not on %s: %q", name, metric, alerts[name])
				}
			}

			c := container(t, r.workload(t))
			if e := mustEnv(t, c, "OTEL_EXPORTER_OTLP_ENDPOINT"); e.Value != "http://otel-collector.observability:4318" {
				t.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT = %q", e.Value)
			}
			if e := mustEnv(t, c, "OTEL_SERVICE_NAME"); e.Value != "loader" {
				t.Errorf("OTEL_SERVICE_NAME = %q, want loader", e.Value)
			}
			if !egressAllows(r.netpols[0], 4318, corev1.ProtocolTCP) {
				t.Error("NetworkPolicy does not allow egress to the OTLP endpoint's port 4318")
			}
		},
	}, {
		name: "inline secrets, SASL and numeric config",
		values: merge(t, baseValues, `
database: {existingSecret: "", url: "postgres://loader:s3cr3t-db@pg.example:5432/warehouse?sslmode=verify-full"}
kafka: {sasl: {mechanism: scram-sha-512, user: loader, password: s3cr3t-kafka}}
config: {SEGWH_FLUSH_BYTES: 8388608, SEGWH_KAFKA_TLS: true, SEGWH_FLUSH_INTERVAL: 2s}
`),
		secrets: []string{"s3cr3t-db", "s3cr3t-kafka"},
		check: func(t *testing.T, r *rendered) {
			if len(r.secrets) != 1 {
				t.Fatalf("rendered %d Secrets, want 1 for the inline values", len(r.secrets))
			}
			s := r.secrets[0]
			c := container(t, r.workload(t))
			for env, want := range map[string]string{"SEGWH_DATABASE_URL": "s3cr3t-db", "SEGWH_KAFKA_SASL_PASSWORD": "s3cr3t-kafka"} {
				ref := mustEnv(t, c, env).ValueFrom
				if ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != s.Name {
					t.Errorf("%s is not read from the Secret %s: %+v", env, s.Name, ref)
					continue
				}
				if v := s.StringData[ref.SecretKeyRef.Key]; !strings.Contains(v, want) {
					t.Errorf("Secret key %s = %q, want it to hold %q", ref.SecretKeyRef.Key, v, want)
				}
			}
			cm := r.configMap(t)
			for k, want := range map[string]string{
				"SEGWH_FLUSH_BYTES":          "8388608", // not 8.388608e+06
				"SEGWH_KAFKA_TLS":            "true",
				"SEGWH_FLUSH_INTERVAL":       "2s",
				"SEGWH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
				"SEGWH_KAFKA_SASL_USER":      "loader",
			} {
				if cm.Data[k] != want {
					t.Errorf("ConfigMap %s = %q, want %q", k, cm.Data[k], want)
				}
			}
			w := r.workload(t)
			if w.pod.Annotations["checksum/secret"] == "" || w.pod.Annotations["checksum/config"] == "" {
				t.Error("pods do not roll when the ConfigMap or Secret changes (checksum annotations missing)")
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, stderr, err := helmTemplate(t, tt.values)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, stderr)
			}
			r := decodeAll(t, out)
			checkInvariants(t, r, tt.secrets)
			tt.check(t, r)
		})
	}

	failures := []struct {
		name, values, want string
	}{
		{"no database secret", `{kafka: {brokers: ["k:9092"], topics: [web]}}`,
			"database: set database.existingSecret"},
		{"keda and hpa together", merge(t, baseValues, `{autoscaling: {keda: {enabled: true}, hpa: {enabled: true}}}`),
			"autoscaling.keda.enabled and autoscaling.hpa.enabled are mutually exclusive"},
		{"secret in the ConfigMap", merge(t, baseValues, `{config: {SEGWH_DATABASE_URL: "postgres://u:p@h/d"}}`),
			"config.SEGWH_DATABASE_URL is a secret"},
		{"grace period shorter than the shutdown timeout", merge(t, baseValues, `{terminationGracePeriodSeconds: 20}`),
			"terminationGracePeriodSeconds (20) must exceed shutdownTimeoutSeconds (25)"},
		{"SASL without a password secret", merge(t, baseValues, `{kafka: {sasl: {mechanism: PLAIN, user: u}}}`),
			"kafka.sasl: set kafka.sasl.existingSecret"},
		{"no brokers", merge(t, baseValues, `{kafka: {brokers: []}}`),
			"kafka.brokers is required"},
		{"minReplicas above the partitions", merge(t, baseValues, `{autoscaling: {minReplicas: 13}}`),
			"autoscaling.minReplicas (13) exceeds the maximum (12"},
	}
	for _, tt := range failures {
		t.Run("fails/"+tt.name, func(t *testing.T) {
			t.Parallel()
			out, stderr, err := helmTemplate(t, tt.values)
			if err == nil {
				t.Fatalf("helm template succeeded, want it to fail with %q\n%s", tt.want, out)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("helm template failed with\n%s\nwant the message %q", stderr, tt.want)
			}
		})
	}
}

func mustEnv(t *testing.T, c corev1.Container, name string) corev1.EnvVar {
	t.Helper()
	e, ok := envVar(c, name)
	if !ok {
		t.Fatalf("container has no env %s", name)
	}
	return e
}

// exported maps each metric name the binary exports to its description.
func exported() map[string]telemetry.Metric {
	m := map[string]telemetry.Metric{}
	for _, x := range telemetry.Metrics {
		m[x.Name] = x
	}
	return m
}

var (
	stringLit = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	ident     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	selectorT = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{`)
	byClause  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	matchers  = regexp.MustCompile(`\{([^}]*)\}`)
	matcher   = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
)

// targetLabels are added by Prometheus or the Prometheus Operator to every
// scraped series.
var targetLabels = []string{"job", "instance", "namespace", "pod", "service", "container", "endpoint"}

// promQL returns the exported metrics an expression uses, and its
// problems: names the binary does not export, and labels that none of the
// expression's metrics carries.
func promQL(expr string) (used, problems []string) {
	exp := exported()
	bare := stringLit.ReplaceAllString(expr, `""`)
	var known []string // labels of the metrics used
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	resolve := func(tok string) (string, bool) {
		if _, ok := exp[tok]; ok {
			return tok, true
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			base, ok := strings.CutSuffix(tok, suf)
			if m, found := exp[base]; ok && found && m.Type == "histogram" {
				if suf == "_bucket" {
					known = append(known, "le")
				}
				return base, true
			}
		}
		return "", false
	}
	for _, tok := range ident.FindAllString(bare, -1) {
		if !strings.HasPrefix(tok, "segwarehouse") {
			continue
		}
		name, ok := resolve(tok)
		if !ok {
			bad("%s is not a metric the binary exports (internal/telemetry.Metrics)", tok)
			continue
		}
		if !slices.Contains(used, name) {
			used = append(used, name)
			known = append(known, exp[name].Labels...)
		}
	}
	// Every selector's name (an identifier followed by "{") is exported or
	// Prometheus's own `up`: this catches a misspelt prefix as well.
	for _, m := range selectorT.FindAllStringSubmatch(bare, -1) {
		if m[1] == "up" {
			continue
		}
		if _, ok := resolve(m[1]); !ok {
			bad("selector on %s, which the binary does not export", m[1])
		}
	}
	if len(used) == 0 && !regexp.MustCompile(`\bup\s*\{`).MatchString(bare) {
		bad("the query uses no exported metric")
	}
	var labelNames []string
	for _, m := range byClause.FindAllStringSubmatch(bare, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labelNames = append(labelNames, l)
			}
		}
	}
	for _, m := range matchers.FindAllStringSubmatch(bare, -1) {
		for _, part := range strings.Split(m[1], ",") {
			if mm := matcher.FindStringSubmatch(part); mm != nil {
				labelNames = append(labelNames, mm[1])
			}
		}
	}
	for _, l := range labelNames {
		if !slices.Contains(known, l) && !slices.Contains(targetLabels, l) {
			bad("label %q is carried by none of %v", l, used)
		}
	}
	return used, problems
}

// checkPromQL reports the problems of an expression found at where.
func checkPromQL(t *testing.T, where, expr string) []string {
	t.Helper()
	used, problems := promQL(expr)
	for _, p := range problems {
		t.Errorf("%s: %s in %s", where, p, expr)
	}
	return used
}

func TestDashboardUsesExportedMetrics(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("grafana/segwarehouse.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	if v, _ := dash["schemaVersion"].(float64); v < 38 {
		t.Errorf("schemaVersion = %v, want >= 38", dash["schemaVersion"])
	}
	var hasDatasourceVar bool
	for _, v := range get(t, dash, "templating", "list").([]any) {
		if get(t, v, "name") == "datasource" && get(t, v, "type") == "datasource" && get(t, v, "query") == "prometheus" {
			hasDatasourceVar = true
		}
		if def, ok := get(t, v, "definition").(string); ok && def != "" {
			checkPromQL(t, "variable "+get(t, v, "name").(string), def)
		}
	}
	if !hasDatasourceVar {
		t.Error("no ${datasource} variable of type datasource (prometheus)")
	}

	// Every panel with queries uses the datasource variable; collect the
	// metrics each panel uses.
	byPanel := map[string][]string{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if targets, ok := x["targets"].([]any); ok {
				title, _ := x["title"].(string)
				if uid := get(t, x, "datasource", "uid"); uid != "${datasource}" {
					t.Errorf("panel %q uses datasource %v, want ${datasource}", title, uid)
				}
				for _, tg := range targets {
					expr, _ := get(t, tg, "expr").(string)
					if expr == "" {
						t.Errorf("panel %q has a target without expr", title)
						continue
					}
					byPanel[title] = append(byPanel[title], checkPromQL(t, "panel "+strconv.Quote(title), expr)...)
				}
			}
			for _, v := range x {
				walk(v)
			}
		case []any:
			for _, v := range x {
				walk(v)
			}
		}
	}
	walk(dash["panels"])

	used := map[string]bool{}
	for _, names := range byPanel {
		for _, n := range names {
			used[n] = true
		}
	}
	for _, m := range telemetry.Metrics {
		if (m.Type == "counter" || m.Type == "histogram") && !used[m.Name] {
			t.Errorf("no panel shows %s (%s)", m.Name, m.Help)
		}
	}
	// The panels an operator looks for first.
	for _, want := range []struct{ title, metric string }{
		{"Consumer lag per partition", "segwarehouse_consumer_lag"},
		{"Flush latency", "segwarehouse_flush_duration_seconds"},
		{"Readiness per pod", "segwarehouse_ready"},
		{"Rows/s per table (top 10)", "segwarehouse_rows_loaded_total"},
	} {
		if !slices.Contains(byPanel[want.title], want.metric) {
			t.Errorf("panel %q missing or not on %s", want.title, want.metric)
		}
	}
	for _, q := range []string{"histogram_quantile(0.5,", "histogram_quantile(0.99,", "topk("} {
		if !bytes.Contains(b, []byte(q)) {
			t.Errorf("dashboard has no %s query", q)
		}
	}

	t.Run("alert rules", func(t *testing.T) {
		t.Parallel()
		out, stderr, err := helmTemplate(t, merge(t, baseValues, `{prometheusRule: {enabled: true}}`))
		if err != nil {
			t.Fatalf("helm template: %v\n%s", err, stderr)
		}
		rule := decodeAll(t, out).one(t, "PrometheusRule")
		var n int
		for _, g := range get(t, rule, "spec", "groups").([]any) {
			for _, r := range get(t, g, "rules").([]any) {
				expr, _ := get(t, r, "expr").(string)
				checkPromQL(t, fmt.Sprintf("alert %v", get(t, r, "alert")), expr)
				n++
			}
		}
		if n < 5 {
			t.Errorf("PrometheusRule has %d rules, want at least 5", n)
		}
	})
}

// TestPromQLChecker proves the checker rejects what it must and accepts
// what the dashboard and alerts write.
func TestPromQLChecker(t *testing.T) {
	t.Parallel()
	for _, expr := range []string{
		`rate(segwarehouse_records_total[5m])`,                           // not exported
		`sum(segwarehous_ready{job="x"})`,                                // misspelt prefix
		`rate(segwarehouse_retries_total_bucket[5m])`,                    // _bucket of a counter
		`sum by (table_name) (rate(segwarehouse_rows_loaded_total[5m]))`, // unknown label
		`sum(rate(segwarehouse_flushes_total{outcome="ok"}[5m]))`,        // unknown label
		`vector(1)`, // no metric at all
	} {
		if _, problems := promQL(expr); len(problems) == 0 {
			t.Errorf("promQL accepted %s", expr)
		}
	}
	good := `histogram_quantile(0.99, sum by (le, namespace) (rate(segwarehouse_flush_duration_seconds_bucket{job="segwarehouse_x"}[5m])))
		/ on (namespace) sum by (namespace) (segwarehouse_consumer_lag{topic!="a"}) or up{job="y"} == 0`
	used, problems := promQL(good)
	if len(problems) != 0 {
		t.Errorf("promQL rejected a valid expression: %v", problems)
	}
	if !slices.Equal(used, []string{"segwarehouse_flush_duration_seconds", "segwarehouse_consumer_lag"}) {
		t.Errorf("promQL found metrics %v", used)
	}
}

// composeFile is the part of a compose file the test reads.
type composeFile struct {
	Services map[string]map[string]any `json:"services"`
	Volumes  map[string]any            `json:"volumes"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// environment reads a service's environment, a map or a list of K=V.
func environment(t *testing.T, svc map[string]any) map[string]string {
	t.Helper()
	env := map[string]string{}
	switch e := svc["environment"].(type) {
	case map[string]any:
		for k, v := range e {
			env[k] = fmt.Sprint(v)
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(fmt.Sprint(kv), "=")
			env[k] = v
		}
	}
	return env
}

func TestComposeFile(t *testing.T) {
	t.Parallel()
	const dir = "compose"
	var cf composeFile
	readYAML(t, filepath.Join(dir, "compose.yaml"), &cf)
	for _, want := range []string{"kafka", "postgres", "otel-collector", "jaeger", "prometheus", "grafana", "segwarehouse"} {
		if cf.Services[want] == nil {
			t.Errorf("no service %s", want)
		}
	}
	service := func(host string) bool { return cf.Services[host] != nil }

	mounts := map[string]map[string]string{} // service → container path → host path
	for name, svc := range cf.Services {
		image, _ := svc["image"].(string)
		if image == "" && svc["build"] == nil {
			t.Errorf("service %s has neither image nor build", name)
		}
		if svc["build"] == nil {
			if i := strings.LastIndex(image, ":"); i < 0 || strings.Contains(image[i:], "/") || strings.HasSuffix(image, ":latest") {
				t.Errorf("service %s: image %q is not pinned to a tag", name, image)
			}
		}
		switch deps := svc["depends_on"].(type) {
		case []any:
			for _, d := range deps {
				if !service(fmt.Sprint(d)) {
					t.Errorf("service %s depends on unknown service %v", name, d)
				}
			}
		case map[string]any:
			for d, cond := range deps {
				if !service(d) {
					t.Errorf("service %s depends on unknown service %s", name, d)
				}
				c, _ := get(t, cond, "condition").(string)
				if c == "service_healthy" && cf.Services[d]["healthcheck"] == nil {
					t.Errorf("service %s waits for %s to be healthy, which has no healthcheck", name, d)
				}
			}
		}
		mounts[name] = map[string]string{}
		vols, _ := svc["volumes"].([]any)
		for _, v := range vols {
			parts := strings.Split(fmt.Sprint(v), ":")
			if len(parts) < 2 {
				t.Errorf("service %s: volume %v is not source:target", name, v)
				continue
			}
			src, dst := parts[0], parts[1]
			if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := cf.Volumes[src]; !ok {
					t.Errorf("service %s uses the undeclared volume %s", name, src)
				}
				continue
			}
			host := filepath.Join(dir, src)
			if _, err := os.Stat(host); err != nil {
				t.Errorf("service %s mounts %s, which does not exist: %v", name, src, err)
			}
			mounts[name][dst] = host
		}
	}

	sw := cf.Services["segwarehouse"]
	build, _ := sw["build"].(map[string]any)
	ctxDir := filepath.Join(dir, fmt.Sprint(build["context"]))
	for _, f := range []string{fmt.Sprint(build["dockerfile"]), "go.mod"} {
		if _, err := os.Stat(filepath.Join(ctxDir, f)); err != nil {
			t.Errorf("segwarehouse build context %s lacks %s", ctxDir, f)
		}
	}
	env := environment(t, sw)

	// Postgres: the loader logs in as the least-privileged role that
	// init.sql creates, into the database the image creates.
	u, err := url.Parse(env["SEGWH_DATABASE_URL"])
	if err != nil || u.Scheme != "postgres" {
		t.Fatalf("SEGWH_DATABASE_URL %q is not a postgres URL", env["SEGWH_DATABASE_URL"])
	}
	if !service(u.Hostname()) {
		t.Errorf("SEGWH_DATABASE_URL points at %s, not a service", u.Hostname())
	}
	pgEnv := environment(t, cf.Services[u.Hostname()])
	dbName := strings.TrimPrefix(u.Path, "/")
	if dbName != pgEnv["POSTGRES_DB"] {
		t.Errorf("SEGWH_DATABASE_URL names database %q, postgres creates %q", dbName, pgEnv["POSTGRES_DB"])
	}
	role := u.User.Username()
	if role == pgEnv["POSTGRES_USER"] || role == "postgres" {
		t.Errorf("segwarehouse connects as the superuser %q, want its own role", role)
	}
	var initSQL string
	for dst, host := range mounts[u.Hostname()] {
		if strings.HasPrefix(dst, "/docker-entrypoint-initdb.d/") {
			b, err := os.ReadFile(host)
			if err != nil {
				t.Fatal(err)
			}
			initSQL += string(b)
		}
	}
	if !regexp.MustCompile(`(?i)CREATE\s+ROLE\s+` + regexp.QuoteMeta(role) + `\s+WITH\s+LOGIN\s+PASSWORD\s+'` + regexp.QuoteMeta(func() string { p, _ := u.User.Password(); return p }()) + `'`).MatchString(initSQL) {
		t.Errorf("no init script creates the login role %s with the URL's password", role)
	}
	grant := regexp.MustCompile(`(?i)GRANT\s+([A-Z, ]+?)\s+ON\s+DATABASE\s+(\w+)\s+TO\s+(\w+)`).FindStringSubmatch(initSQL)
	if grant == nil || grant[2] != dbName || grant[3] != role {
		t.Fatalf("no GRANT ... ON DATABASE %s TO %s in the init script", dbName, role)
	}
	for _, priv := range []string{"CONNECT", "CREATE", "TEMPORARY"} {
		if !strings.Contains(strings.ToUpper(grant[1]), priv) {
			t.Errorf("init script does not grant %s on the database", priv)
		}
	}
	code := regexp.MustCompile(`--[^\n]*`).ReplaceAllString(initSQL, "")
	if regexp.MustCompile(`(?i)\bSUPERUSER\b|\bCREATEROLE\b|GRANT\s+ALL|\bpg_\w+`).MatchString(code) {
		t.Error("init script grants more than the loader needs")
	}
	if u.Query().Get("sslmode") == "disable" && env["SEGWH_DATABASE_ALLOW_PLAINTEXT"] != "true" {
		t.Error("sslmode=disable to a non-local host needs SEGWH_DATABASE_ALLOW_PLAINTEXT=true (the sink refuses it otherwise)")
	}

	// Kafka: every broker is a service that advertises that very address.
	kafkaEnv := map[string]map[string]string{}
	for _, b := range strings.Split(env["SEGWH_KAFKA_BROKERS"], ",") {
		host, _, err := net.SplitHostPort(b)
		if err != nil || !service(host) {
			t.Errorf("SEGWH_KAFKA_BROKERS: %q is not host:port of a service", b)
			continue
		}
		kafkaEnv[host] = environment(t, cf.Services[host])
		if !strings.Contains(kafkaEnv[host]["KAFKA_ADVERTISED_LISTENERS"], "://"+b) {
			t.Errorf("broker %s does not advertise %s: %s", host, b, kafkaEnv[host]["KAFKA_ADVERTISED_LISTENERS"])
		}
		if !strings.Contains(kafkaEnv[host]["KAFKA_PROCESS_ROLES"], "controller") {
			t.Errorf("broker %s is not in KRaft mode (no controller role)", host)
		}
	}
	topics := strings.Split(env["SEGWH_KAFKA_TOPICS"], ",")
	if len(topics) == 0 || topics[0] == "" {
		t.Fatal("SEGWH_KAFKA_TOPICS is empty")
	}
	var created bool
	for name, svc := range cf.Services {
		cmd := fmt.Sprint(svc["command"])
		if !strings.Contains(cmd, "kafka-topics.sh") || !strings.Contains(cmd, "--create") {
			continue
		}
		created = true
		for _, topic := range topics {
			if !regexp.MustCompile(`\b` + regexp.QuoteMeta(topic) + `\b`).MatchString(cmd) {
				t.Errorf("service %s does not create topic %s", name, topic)
			}
		}
		if cond := get(t, sw, "depends_on", name, "condition"); cond != "service_completed_successfully" {
			t.Errorf("segwarehouse does not wait for %s to create the topics (condition %v)", name, cond)
		}
	}
	if !created {
		t.Error("no service creates the topics (auto-creation is off)")
	}

	// Shutdown: compose waits longer than the final flush.
	shutdown, err := time.ParseDuration(env["SEGWH_SHUTDOWN_TIMEOUT"])
	if err != nil {
		shutdown = 25 * time.Second
	}
	if grace, err := time.ParseDuration(fmt.Sprint(sw["stop_grace_period"])); err != nil || grace <= shutdown {
		t.Errorf("stop_grace_period %v must exceed SEGWH_SHUTDOWN_TIMEOUT %s", sw["stop_grace_period"], shutdown)
	}

	// OpenTelemetry: the endpoint is the collector, on a port its OTLP
	// receiver listens on; its pipelines are wired.
	otlp, err := url.Parse(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
	if err != nil || !service(otlp.Hostname()) {
		t.Fatalf("OTEL_EXPORTER_OTLP_ENDPOINT %q does not point at a service", env["OTEL_EXPORTER_OTLP_ENDPOINT"])
	}
	var collectorCfg string
	for dst, host := range mounts[otlp.Hostname()] {
		if strings.HasSuffix(dst, ".yaml") && strings.Contains(fmt.Sprint(cf.Services[otlp.Hostname()]["command"]), dst) {
			collectorCfg = host
		}
	}
	if collectorCfg == "" {
		t.Fatalf("the collector's --config file is not mounted from deploy/compose")
	}
	var col map[string]any
	readYAML(t, collectorCfg, &col)
	var otlpPorts []string
	for _, proto := range []string{"grpc", "http"} {
		if ep, ok := get(t, col, "receivers", "otlp", "protocols", proto, "endpoint").(string); ok {
			_, p, _ := net.SplitHostPort(ep)
			otlpPorts = append(otlpPorts, p)
		}
	}
	if !slices.Contains(otlpPorts, otlp.Port()) {
		t.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT port %s is not one the OTLP receiver listens on %v", otlp.Port(), otlpPorts)
	}
	pipelines, _ := get(t, col, "service", "pipelines").(map[string]any)
	for _, want := range []string{"traces", "metrics"} {
		if pipelines[want] == nil {
			t.Errorf("collector has no %s pipeline", want)
		}
	}
	for pname, p := range pipelines {
		for _, section := range []string{"receivers", "processors", "exporters"} {
			defined, _ := col[section].(map[string]any)
			list, _ := get(t, p, section).([]any)
			if section != "processors" && len(list) == 0 {
				t.Errorf("pipeline %s has no %s", pname, section)
			}
			for _, c := range list {
				if _, ok := defined[fmt.Sprint(c)]; !ok {
					t.Errorf("pipeline %s uses %s %v, which is not defined", pname, section, c)
				}
			}
		}
	}
	exps, _ := col["exporters"].(map[string]any)
	var jaegerOK bool
	for name, e := range exps {
		if strings.HasPrefix(name, "otlp") {
			ep, _ := get(t, e, "endpoint").(string)
			host, _, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(ep, "http://"), "https://"))
			if err != nil || !service(host) {
				t.Errorf("collector exporter %s sends to %q, not a service", name, ep)
			}
			jaegerOK = jaegerOK || strings.Contains(host, "jaeger") && slices.Contains(toStrings(get(t, pipelines, "traces", "exporters")), name)
		}
	}
	if !jaegerOK {
		t.Error("the traces pipeline does not export to Jaeger over OTLP")
	}
	promEP, _ := get(t, col, "exporters", "prometheus", "endpoint").(string)
	_, promPort, _ := net.SplitHostPort(promEP)
	if !slices.Contains(toStrings(get(t, pipelines, "metrics", "exporters")), "prometheus") {
		t.Error("the metrics pipeline does not export to Prometheus")
	}

	// Prometheus scrapes segwarehouse's /metrics and the collector.
	var promCfg map[string]any
	var promFile string
	for dst, host := range mounts["prometheus"] {
		if strings.HasSuffix(dst, "prometheus.yml") {
			promFile = host
		}
	}
	if promFile == "" {
		t.Fatal("prometheus.yml is not mounted")
	}
	readYAML(t, promFile, &promCfg)
	_, httpPort, err := net.SplitHostPort(env["SEGWH_HTTP_ADDR"])
	if err != nil {
		t.Fatalf("SEGWH_HTTP_ADDR %q: %v", env["SEGWH_HTTP_ADDR"], err)
	}
	var targets []string
	for _, sc := range get(t, promCfg, "scrape_configs").([]any) {
		path, _ := get(t, sc, "metrics_path").(string)
		for _, st := range get(t, sc, "static_configs").([]any) {
			for _, tg := range toStrings(get(t, st, "targets")) {
				if path == "" || path == "/metrics" {
					targets = append(targets, tg)
				}
			}
		}
	}
	for _, want := range []string{"segwarehouse:" + httpPort, otlp.Hostname() + ":" + promPort} {
		if !slices.Contains(targets, want) {
			t.Errorf("Prometheus does not scrape %s/metrics (targets %v)", want, targets)
		}
	}

	// Grafana: the dashboard is mounted where a provider looks, and the
	// datasources point at services.
	var provider map[string]any
	var providerPath string
	for dst, host := range mounts["grafana"] {
		if strings.Contains(dst, "/provisioning/dashboards/") {
			readYAML(t, host, &provider)
			providerPath, _ = get(t, provider, "providers", 0, "options", "path").(string)
		}
		if strings.Contains(dst, "/provisioning/datasources/") {
			var ds map[string]any
			readYAML(t, host, &ds)
			for _, d := range get(t, ds, "datasources").([]any) {
				du, err := url.Parse(fmt.Sprint(get(t, d, "url")))
				if err != nil || !service(du.Hostname()) {
					t.Errorf("Grafana datasource %v points at %v, not a service", get(t, d, "name"), get(t, d, "url"))
				}
			}
		}
	}
	var dashMounted bool
	for dst, host := range mounts["grafana"] {
		if filepath.Base(host) == "segwarehouse.json" && filepath.Dir(dst) == providerPath {
			dashMounted = filepath.Clean(host) == filepath.Join("grafana", "segwarehouse.json")
		}
	}
	if !dashMounted {
		t.Errorf("deploy/grafana/segwarehouse.json is not mounted into the provider's path %q", providerPath)
	}
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
	stage     int // index of the FROM it belongs to
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	stage := -1
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(trimmed)
		full := strings.TrimSpace(cur.String())
		cur.Reset()
		if full == "" {
			continue
		}
		cmd, args, _ := strings.Cut(full, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, instruction{cmd, strings.TrimSpace(args), stage})
	}
	return out
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	ins := parseDockerfile(t, "../Dockerfile")
	var froms []instruction
	globalArgs := map[string]string{}
	for _, in := range ins {
		switch {
		case in.cmd == "FROM":
			froms = append(froms, in)
		case in.cmd == "ARG" && in.stage < 0:
			k, v, _ := strings.Cut(in.args, "=")
			globalArgs[k] = v
		case in.cmd == "HEALTHCHECK":
			t.Errorf("HEALTHCHECK %s: Kubernetes probes do that", in.args)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("%d FROM lines, want a multi-stage build", len(froms))
	}
	image := func(from instruction) (img, alias string) {
		f := strings.Fields(from.args)
		for len(f) > 0 && strings.HasPrefix(f[0], "--") {
			f = f[1:]
		}
		img = os.Expand(f[0], func(k string) string { return globalArgs[k] })
		if len(f) == 3 && strings.EqualFold(f[1], "AS") {
			alias = f[2]
		}
		return img, alias
	}
	builderImg, builder := image(froms[0])
	if !strings.HasPrefix(builderImg, "golang:1.26") {
		t.Errorf("builder image %s, want golang:1.26", builderImg)
	}
	last := froms[len(froms)-1].stage
	finalImg, _ := image(froms[len(froms)-1])
	if !strings.HasPrefix(finalImg, "gcr.io/distroless/static") && finalImg != "scratch" {
		t.Errorf("final image %s, want distroless static or scratch", finalImg)
	}

	var build, user, entrypoint, cmd string
	var copied string
	stageArgs := map[int][]string{}
	for _, in := range ins {
		switch {
		case in.cmd == "ARG":
			k, _, _ := strings.Cut(in.args, "=")
			stageArgs[in.stage] = append(stageArgs[in.stage], k)
		case in.cmd == "RUN" && strings.Contains(in.args, "go build"):
			build = in.args
			if !slices.Contains(stageArgs[in.stage], "VERSION") {
				t.Error("go build runs in a stage without ARG VERSION")
			}
			if !strings.Contains(in.args, "--mount=type=cache,target=/go/pkg/mod") {
				t.Error("go build does not use a module cache mount")
			}
		case in.stage == last && in.cmd == "USER":
			user = in.args
		case in.stage == last && in.cmd == "ENTRYPOINT":
			entrypoint = in.args
		case in.stage == last && in.cmd == "CMD":
			cmd = in.args
		case in.stage == last && in.cmd == "COPY" && strings.Contains(in.args, "--from="+builder):
			copied = in.args
		case in.stage == last && in.cmd == "LABEL":
			if !strings.Contains(in.args, "org.opencontainers.image.version=\"${VERSION}\"") {
				t.Errorf("LABEL lacks org.opencontainers.image.version from VERSION: %s", in.args)
			}
			if !slices.Contains(stageArgs[in.stage], "VERSION") {
				t.Error("the final stage labels VERSION without declaring ARG VERSION")
			}
		}
	}
	for _, flag := range []string{"CGO_ENABLED=0", "-trimpath", "-buildvcs=false", "-X main.version=${VERSION}", "./cmd/segwarehouse"} {
		if !strings.Contains(build, flag) {
			t.Errorf("go build lacks %s: %s", flag, build)
		}
	}
	// -X silently does nothing when the variable does not exist.
	src, err := os.ReadFile("../cmd/segwarehouse/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^var version = "`).Match(src) {
		t.Error("cmd/segwarehouse has no `var version = \"...\"` for -X main.version")
	}
	out := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(build)
	if out == nil || !strings.Contains(copied, out[1]+" /segwarehouse") {
		t.Errorf("the final stage does not copy the built %v to /segwarehouse: COPY %s", out, copied)
	}
	uid, gid, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q is not a numeric non-root uid", user)
	}
	if _, err := strconv.Atoi(gid); gid != "" && err != nil {
		t.Errorf("USER %q has a non-numeric gid", user)
	}
	if entrypoint != `["/segwarehouse"]` || cmd != `["run"]` {
		t.Errorf("ENTRYPOINT %s CMD %s, want [\"/segwarehouse\"] [\"run\"]", entrypoint, cmd)
	}

	// .dockerignore keeps the context small but not the sources out.
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimSuffix(strings.TrimPrefix(l, "/"), "/"))
		}
	}
	if !slices.Contains(patterns, ".git") {
		t.Error(".dockerignore does not exclude .git")
	}
	for _, need := range []string{"go.mod", "go.sum", "cmd/segwarehouse/main.go", "consumer/consumer.go", "internal/telemetry/names.go"} {
		for _, p := range patterns {
			top, _, _ := strings.Cut(need, "/")
			if ok, _ := filepath.Match(p, need); ok || p == top {
				t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", p, need)
			}
		}
	}
}
