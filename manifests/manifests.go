package manifests

import (
	"encoding/json"
	"fmt"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Kustomizations are the kustomization directories under manifests/, base first.
var Kustomizations = []string{"base", "envoy", "traefik", "traefik-tls", "envoy-tls", "ha"}

// options are kustomize's defaults (files restricted to the kustomization's root, no plugins)
// with kubectl's "legacy" order: Namespaces first, so the output can be applied as it is.
func options() *krusty.Options {
	o := krusty.MakeDefaultOptions()
	o.Reorder = krusty.ReorderOptionLegacy
	return o
}

// Render builds the kustomization in dir and returns the objects as one YAML stream, as
// `kubectl kustomize dir` prints them.
func Render(dir string) ([]byte, error) {
	m, err := krusty.MakeKustomizer(options()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	return out, nil
}

// RenderObjects builds the kustomization in dir like Render and returns each object as JSON, in
// output order.
func RenderObjects(dir string) ([]json.RawMessage, error) {
	m, err := krusty.MakeKustomizer(options()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	var objs []json.RawMessage
	for _, r := range m.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("kustomize %s: %s: %w", dir, r.CurId(), err)
		}
		objs = append(objs, b)
	}
	return objs, nil
}
