//go:build tools

// Package tools pins the two servers the integration tests build: the wrapper
// module exists only so that `go build` can resolve k8s.io/kubernetes, whose
// own go.mod points its staging modules at ./staging (hence the replaces).
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
