package ipam

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Port is one port a Service exposes.
type Port struct {
	Protocol string
	Port     int32
}

// Request is what one Service asks of the allocator.
type Request struct {
	UID       string
	Namespace string
	Name      string

	NamespaceLabels map[string]string
	Labels          map[string]string

	// Families wanted, in order. RequireAll makes the failure of any family
	// a failure of the request (SingleStack, RequireDualStack); otherwise
	// (PreferDualStack) the families that can be served are.
	Families   []Family
	RequireAll bool

	// From annotations: a pool name, requested addresses (at most one per
	// family) and the namespaced sharing key ("<namespace>/<key>").
	Pool       string
	IPs        []netip.Addr
	SharingKey string

	// Current lists the addresses the Service's status already shows. A
	// Service that holds no record for a family adopts its current address
	// when that is free, so an address is not changed by a lost record.
	Current []netip.Addr
}

// Sharing reports whether the request carries a sharing key.
func (r Request) Sharing() bool { return r.SharingKey != "" }

func (r Request) current(f Family) netip.Addr {
	for _, a := range r.Current {
		if FamilyOf(a) == f {
			return a
		}
	}
	return netip.Addr{}
}

// ParseIPs parses the eiplb.io/ip annotation: comma-separated addresses, at
// most one per family.
func ParseIPs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	seen := map[Family]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" || a.Is4In6() {
			return nil, fmt.Errorf("%s is not an IP address", Quote(f))
		}
		if why := Unusable(a); why != "" {
			return nil, fmt.Errorf("%s can't be a load-balancer address: it is %s", a, why)
		}
		fam := FamilyOf(a)
		if seen[fam] {
			return nil, fmt.Errorf("more than one %s address in %s", fam, Quote(s))
		}
		seen[fam] = true
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no address in %s", Quote(s))
	}
	return out, nil
}

// ParseSharingKey validates a sharing key and scopes it to the namespace:
// Services can share only with Services of their own namespace.
func ParseSharingKey(namespace, key string) (string, error) {
	if errs := validation.IsQualifiedName(key); len(errs) > 0 {
		return "", fmt.Errorf("sharing key %s is invalid: %s", Quote(key), strings.Join(errs, "; "))
	}
	return namespace + "/" + key, nil
}

// ParsePoolName validates the eiplb.io/pool annotation.
func ParsePoolName(s string) (string, error) {
	if errs := validation.IsDNS1123Subdomain(s); len(errs) > 0 {
		return "", fmt.Errorf("pool name %s is invalid: %s", Quote(s), strings.Join(errs, "; "))
	}
	return s, nil
}
