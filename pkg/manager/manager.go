// Package manager builds the eiplb manager: a controller-runtime manager
// with the IPAM controllers (leader-elected) and, later, the announcer.
package manager

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/eiplb/eiplb/pkg/apis/v1alpha1"
	ipamctrl "github.com/eiplb/eiplb/pkg/controller/ipam"
)

// Options of the manager process.
type Options struct {
	// MetricsAddr serves /metrics ("0" disables it).
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz ("0" disables it).
	ProbeAddr string

	LeaderElection          bool
	LeaderElectionNamespace string
	LeaderElectionID        string
	// LeaseDuration, RenewDeadline and RetryPeriod tune how fast a new
	// leader takes over allocation; zero keeps the defaults below.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	IPAM ipamctrl.Options

	// SeveralPerProcess allows more than one manager in one process (tests
	// that run two allocators at once).
	SeveralPerProcess bool
}

// NewScheme returns the scheme of every type the manager reads.
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

// New builds a manager with every controller set up; Start runs it.
func New(ctx context.Context, cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	lease, renew, retry := orDefault(opts.LeaseDuration, 4*time.Second), orDefault(opts.RenewDeadline, 3*time.Second), orDefault(opts.RetryPeriod, 500*time.Millisecond)
	if opts.LeaderElectionID == "" {
		opts.LeaderElectionID = "eiplb-ipam"
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: orDefaultStr(opts.MetricsAddr, "0")},
		HealthProbeBindAddress:        orDefaultStr(opts.ProbeAddr, "0"),
		LeaderElection:                opts.LeaderElection,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionID:              opts.LeaderElectionID,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &lease,
		RenewDeadline:                 &renew,
		RetryPeriod:                   &retry,
		Controller:                    config.Controller{SkipNameValidation: &opts.SeveralPerProcess},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	if err := ipamctrl.Setup(ctx, mgr, opts.IPAM); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func orDefaultStr(s, def string) string {
	if s != "" {
		return s
	}
	return def
}
