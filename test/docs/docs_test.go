// Package docs_test keeps the reference docs honest: every field of every
// CRD the project installs must be named in the page that documents its
// kind, so a new field can't ship undocumented.
package docs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// page documents each kind.
var page = map[string]string{
	"EIPPool":          "ipam.md",
	"EIPAllocation":    "ipam.md",
	"BGPPeer":          "bgp.md",
	"BGPAdvertisement": "bgp.md",
	"EIPNode":          "agent.md",
}

type schema struct {
	Properties map[string]schema `json:"properties"`
	Items      *schema           `json:"items"`
}

// standard reports whether s is a Kubernetes type documented upstream
// (a label selector, a condition), whose inner fields are not ours to list.
func standard(s schema) bool {
	has := func(k ...string) bool {
		for _, x := range k {
			if _, ok := s.Properties[x]; !ok {
				return false
			}
		}
		return true
	}
	return has("matchLabels", "matchExpressions") || has("lastTransitionTime", "reason", "status", "type")
}

// fields lists the dotted paths of every field below s.
func fields(s schema, path string, out *[]string) {
	if s.Items != nil {
		fields(*s.Items, path+"[]", out)
	}
	if standard(s) {
		return
	}
	for name, p := range s.Properties {
		fp := path + "." + name
		if path == "" {
			if name == "apiVersion" || name == "kind" || name == "metadata" {
				continue
			}
			fp = name
		}
		*out = append(*out, fp)
		fields(p, fp, out)
	}
}

func TestEveryCRDFieldIsDocumented(t *testing.T) {
	crds, err := filepath.Glob("../../config/crd/bases/*.yaml")
	if err != nil || len(crds) == 0 {
		t.Fatalf("no CRDs found: %v", err)
	}
	var kinds []string
	for _, f := range crds {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd struct {
			Spec struct {
				Names    struct{ Kind string } `json:"names"`
				Versions []struct {
					Schema struct {
						OpenAPIV3Schema schema `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(b, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		kind := crd.Spec.Names.Kind
		kinds = append(kinds, kind)
		name, ok := page[kind]
		if !ok {
			t.Errorf("CRD %s has no documentation page: write one in docs/ and list it here", kind)
			continue
		}
		doc, err := os.ReadFile(filepath.Join("../../docs", name))
		if err != nil {
			t.Fatal(err)
		}
		// Code spans of the page: a field counts as documented when its
		// name is a word of one (`spec.pool`, `…phase`, `{enabled, multiplier}`).
		spans := strings.Join(regexp.MustCompile("`[^`\n]+`").FindAllString(string(doc), -1), "\n")
		if !strings.Contains(spans, "`"+kind+"`") {
			t.Errorf("docs/%s does not name the kind `%s`", name, kind)
		}
		for _, v := range crd.Spec.Versions {
			var all []string
			fields(v.Schema.OpenAPIV3Schema, "", &all)
			slices.Sort(all)
			for _, f := range all {
				leaf := f[strings.LastIndexAny(f, ".]")+1:]
				if !regexp.MustCompile(`\b` + regexp.QuoteMeta(leaf) + `\b`).MatchString(spans) {
					t.Errorf("%s field %s is not documented in docs/%s", kind, f, name)
				}
			}
		}
	}
	for k := range page {
		if !slices.Contains(kinds, k) {
			t.Errorf("page lists kind %s, which no CRD defines", k)
		}
	}
}
