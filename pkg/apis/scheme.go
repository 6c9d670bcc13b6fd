// Package apis builds the scheme every eiplb client reads with: the
// Kubernetes built-in types and eiplb.io/v1alpha1. It links no controller or
// speaker code, so the kubectl plugin can use it without the manager.
package apis

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
)

// NewScheme returns the scheme of every type the manager, the agent and the
// plugin read.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}
