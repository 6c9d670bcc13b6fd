package migrate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ReadFiles reads objects from YAML or JSON files ("-" is stdin): several
// documents per file, and List objects, are unpacked.
func ReadFiles(paths []string, stdin io.Reader) ([]Object, error) {
	var out []Object
	for _, p := range paths {
		var r io.Reader
		if p == "-" {
			r = stdin
		} else {
			f, err := os.Open(p)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			r = f
		}
		objs, err := decode(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

func decode(r io.Reader) ([]Object, error) {
	rd := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var out []Object
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := utilyaml.Unmarshal(doc, &u.Object); err != nil {
			return nil, err
		}
		if len(u.Object) == 0 {
			continue // only comments
		}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, err
			}
			for i := range list.Items {
				out = append(out, &list.Items[i])
			}
			continue
		}
		if u.GetKind() == "" {
			return nil, fmt.Errorf("a document has no kind")
		}
		out = append(out, u)
	}
}

// ReadCluster lists the source's kinds (those whose CRD is not installed
// are skipped) and every Service; namespace, when set, limits the
// namespaced kinds (MetalLB's objects, the Services) to it.
func ReadCluster(ctx context.Context, c client.Reader, from, namespace string) ([]Object, error) {
	group, kinds := metallbGroup, MetalLBKinds
	if from == FromOpenELB {
		group, kinds = openelbGroup, OpenELBKinds
	}
	var out []Object
	list := func(gvk schema.GroupVersionKind) error {
		l := &unstructured.UnstructuredList{}
		l.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := c.List(ctx, l, client.InNamespace(namespace)); err != nil {
			return err
		}
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
		return nil
	}
	found := 0
	for _, k := range kinds {
		versions, kind, _ := strings.Cut(k, " ")
		for _, version := range strings.Split(versions, ",") { // the newest served
			err := list(schema.GroupVersionKind{Group: group, Version: version, Kind: kind})
			if apimeta.IsNoMatchError(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("listing %s.%s: %w", kind, group, err)
			}
			found++
			break
		}
	}
	if found == 0 {
		return nil, fmt.Errorf("none of %s's kinds (%s) is served by this cluster", from, group)
	}
	if err := list(schema.GroupVersionKind{Version: "v1", Kind: "Service"}); err != nil {
		return nil, fmt.Errorf("listing Services: %w", err)
	}
	return out, nil
}
