//go:build tools

// Package tools pins etcdctl, used by the chaos tests to compact etcd.
package main

import _ "go.etcd.io/etcd/etcdctl/v3"
