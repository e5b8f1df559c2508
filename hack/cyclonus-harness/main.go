// Command cyclonus-harness answers, with cyclonus's NetworkPolicy matcher
// (github.com/mattfenwick/cyclonus/pkg/matcher), whether each flow of a cluster state is
// allowed. It is the independent oracle of envisolation's differential tier
// (tests/differential/test_cyclonus.py), which prepares its input (see cyclonus_input
// there: policyTypes made explicit, label selectors rewritten where cyclonus reads them
// differently from Kubernetes).
//
// Input (stdin, JSON):
//
//	{"policies": [NetworkPolicy...],
//	 "pods": [{"namespace", "name", "labels", "namespaceLabels", "ip",
//	           "ports": [{"name", "port", "protocol"}]}],
//	 "externals": ["198.19.0.1", ...],
//	 "probes": [{"protocol": "TCP", "port": 80}, ...]}
//
// Output (stdout, JSON): one verdict per (source, destination, probe), sources and
// destinations being pods ("ns/name") and external addresses (no external-to-external):
//
//	[{"src", "dst", "protocol", "port", "allowed"}, ...]
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

type port struct {
	Name     string `json:"name"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
}

type pod struct {
	Namespace       string            `json:"namespace"`
	Name            string            `json:"name"`
	Labels          map[string]string `json:"labels"`
	NamespaceLabels map[string]string `json:"namespaceLabels"`
	IP              string            `json:"ip"`
	Ports           []port            `json:"ports"`
}

type probe struct {
	Protocol string `json:"protocol"`
	Port     int    `json:"port"`
}

type input struct {
	Policies  []*networkingv1.NetworkPolicy `json:"policies"`
	Pods      []pod                         `json:"pods"`
	Externals []string                      `json:"externals"`
	Probes    []probe                       `json:"probes"`
}

type verdict struct {
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Protocol string `json:"protocol"`
	Port     int    `json:"port"`
	Allowed  bool   `json:"allowed"`
}

type endpoint struct {
	key  string
	peer *matcher.TrafficPeer
	pod  *pod
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintf(os.Stderr, "cyclonus-harness: reading the input: %v\n", err)
		os.Exit(2)
	}
	// The simplifier is left off: it merges targets, and the verdicts must be cyclonus's
	// reading of the policies as written.
	policy := matcher.BuildNetworkPolicies(false, in.Policies)

	var eps []endpoint
	for i := range in.Pods {
		p := &in.Pods[i]
		eps = append(eps, endpoint{p.Namespace + "/" + p.Name, &matcher.TrafficPeer{
			Internal: &matcher.InternalPeer{PodLabels: p.Labels, NamespaceLabels: p.NamespaceLabels, Namespace: p.Namespace},
			IP:       p.IP,
		}, p})
	}
	for _, ip := range in.Externals {
		eps = append(eps, endpoint{ip, &matcher.TrafficPeer{IP: ip}, nil})
	}
	out := []verdict{}
	for _, src := range eps {
		for _, dst := range eps {
			if src.key == dst.key || (src.pod == nil && dst.pod == nil) {
				continue
			}
			for _, pr := range in.Probes {
				name := ""
				if dst.pod != nil { // a named port is the destination pod's port of that name
					for _, cp := range dst.pod.Ports {
						if cp.Port == pr.Port && cp.Protocol == pr.Protocol {
							name = cp.Name
						}
					}
				}
				traffic := &matcher.Traffic{Source: src.peer, Destination: dst.peer,
					ResolvedPort: pr.Port, ResolvedPortName: name, Protocol: v1.Protocol(pr.Protocol)}
				out = append(out, verdict{src.key, dst.key, pr.Protocol, pr.Port,
					policy.IsTrafficAllowed(traffic).IsAllowed()})
			}
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintf(os.Stderr, "cyclonus-harness: %v\n", err)
		os.Exit(1)
	}
}
