// Command render prints the Kubernetes manifests of extauthz as `kubectl kustomize` would,
// without needing kubectl.
//
//	go run ./manifests/render                      # every kustomization under ./manifests, to stdout
//	go run ./manifests/render manifests/envoy      # one kustomization
//	go run ./manifests/render -out dist/manifests  # one file per kustomization: dist/manifests/<name>.yaml
package main
