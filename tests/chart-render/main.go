// chart-render renders a Helm chart the way `helm template` does, for the
// tests (no registry here ships the helm binary): Go's text/template with
// sprig and Helm's own functions (include, tpl, toYaml, fromYaml, required,
// fail, lookup) and built-in objects (.Values, .Release, .Chart,
// .Capabilities, .Template). It prints the rendered objects as one
// `kind: List` in JSON.
//
//	chart-render --chart DIR [--values FILE]... [--release NAME] [--namespace NS] [--api-versions a/v1,b/v2]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// VersionSet is .Capabilities.APIVersions.
type VersionSet []string

// Has says whether the server serves this group/version.
func (v VersionSet) Has(version string) bool {
	for _, have := range v {
		if have == version {
			return true
		}
	}
	return false
}

// normalize turns yaml.v3's map[string]interface{} trees into JSON-ready ones.
func normalize(v interface{}) interface{} {
	switch t := v.(type) {
	case map[string]interface{}:
		for k, e := range t {
			t[k] = normalize(e)
		}
		return t
	case map[interface{}]interface{}:
		out := map[string]interface{}{}
		for k, e := range t {
			out[fmt.Sprint(k)] = normalize(e)
		}
		return out
	case []interface{}:
		for i, e := range t {
			t[i] = normalize(e)
		}
		return t
	}
	return v
}

// merge puts `over` onto `base` as Helm coalesces values: maps merge key by
// key, anything else replaces, and null deletes.
func merge(base, over map[string]interface{}) map[string]interface{} {
	for k, v := range over {
		if v == nil {
			delete(base, k)
			continue
		}
		if vm, ok := v.(map[string]interface{}); ok {
			if bm, ok := base[k].(map[string]interface{}); ok {
				base[k] = merge(bm, vm)
				continue
			}
		}
		base[k] = v
	}
	return base
}

func readYAML(path string) (map[string]interface{}, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(text, &out); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if out == nil {
		out = map[string]interface{}{}
	}
	return normalize(out).(map[string]interface{}), nil
}

func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func main() {
	chart := flag.String("chart", "", "the chart's directory")
	release := flag.String("release", "flowtel", "the release name")
	namespace := flag.String("namespace", "default", "the release namespace")
	apiVersions := flag.String("api-versions", "", "group/versions the cluster serves, comma separated")
	var valueFiles multiFlag
	flag.Var(&valueFiles, "values", "a values file (repeatable)")
	flag.Parse()
	if err := render(*chart, *release, *namespace, *apiVersions, valueFiles); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func render(chart, release, namespace, apiVersions string, valueFiles []string) error {
	meta, err := readYAML(filepath.Join(chart, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readYAML(filepath.Join(chart, "values.yaml"))
	if err != nil {
		return err
	}
	for _, file := range valueFiles {
		over, err := readYAML(file)
		if err != nil {
			return err
		}
		values = merge(values, over)
	}
	versions := VersionSet{"v1"}
	for _, v := range strings.Split(apiVersions, ",") {
		if v != "" {
			versions = append(versions, v)
		}
	}
	top := map[string]interface{}{
		"Values":  values,
		"Release": map[string]interface{}{"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1},
		"Chart": map[string]interface{}{
			"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"], "Description": meta["description"],
		},
		"Capabilities": map[string]interface{}{
			"APIVersions": versions,
			"KubeVersion": map[string]interface{}{"Version": "v1.20.0", "Major": "1", "Minor": "20"},
		},
	}

	root := template.New("chart")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = func(text string) map[string]interface{} {
		out := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(text), &out); err != nil {
			return map[string]interface{}{"Error": err.Error()}
		}
		return normalize(out).(map[string]interface{})
	}
	funcs["required"] = func(message string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, errors.New(message)
		}
		return v, nil
	}
	funcs["fail"] = func(message string) (string, error) { return "", errors.New(message) }
	funcs["lookup"] = func(...string) map[string]interface{} { return map[string]interface{}{} }
	root.Funcs(funcs).Option("missingkey=zero")

	dir := filepath.Join(chart, "templates")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, entry := range entries {
		name := entry.Name()
		if !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".tpl") {
			continue
		}
		text, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if _, err := root.New("templates/" + name).Parse(string(text)); err != nil {
			return err
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var items []interface{}
	for _, name := range names {
		if strings.HasPrefix(name, "_") || !strings.HasSuffix(name, ".yaml") {
			continue
		}
		top["Template"] = map[string]interface{}{"Name": "templates/" + name, "BasePath": "templates"}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, "templates/"+name, top); err != nil {
			return err
		}
		for _, doc := range strings.Split(buf.String(), "\n---") {
			var object map[string]interface{}
			if err := yaml.Unmarshal([]byte(doc), &object); err != nil {
				return fmt.Errorf("templates/%s renders invalid YAML: %v\n%s", name, err, doc)
			}
			if len(object) > 0 {
				items = append(items, normalize(object))
			}
		}
	}
	out, err := json.MarshalIndent(map[string]interface{}{"apiVersion": "v1", "kind": "List", "items": items}, "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}
