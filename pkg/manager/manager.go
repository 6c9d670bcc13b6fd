// Package manager builds the eiplb manager: a controller-runtime manager
// with the IPAM controllers (on the elected IPAM leader) and the announcer (on every replica).
package manager

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/eiplb/eiplb/pkg/apis"
	"github.com/eiplb/eiplb/pkg/bgp"
	announcectrl "github.com/eiplb/eiplb/pkg/controller/announce"
	ipamctrl "github.com/eiplb/eiplb/pkg/controller/ipam"
	"github.com/eiplb/eiplb/pkg/serving"
)

// Leader election records its Events ("became leader") with the core API,
// in the Lease's namespace.
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=eiplb-system

// Options of the manager process.
type Options struct {
	// MetricsAddr serves /metrics ("0" disables it).
	MetricsAddr string
	// MetricsInsecure serves /metrics over plain HTTP to anyone who can
	// reach it; by default it is HTTPS, and a scraper must present a
	// token allowed to get the non-resource URL /metrics (TokenReview and
	// SubjectAccessReview).
	MetricsInsecure bool
	// ProbeAddr serves /healthz and /readyz ("0" disables it).
	ProbeAddr string
	// PprofAddr serves Go's /debug/pprof ("" or "0" disables it).
	PprofAddr string

	LeaderElection bool
	// LeaderElectionNamespace is the manager's namespace: the Lease and the
	// BGP password Secrets live there. Defaults to eiplb-system.
	LeaderElectionNamespace string
	LeaderElectionID        string
	// LeaseDuration, RenewDeadline and RetryPeriod tune how fast a new
	// leader takes over allocation; zero keeps the defaults below.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	IPAM ipamctrl.Options

	// Announce configures the BGP announcer; nil runs IPAM only (for
	// clusters whose nodes already peer with the routers, e.g. Calico).
	Announce *AnnounceOptions

	// SeveralPerProcess allows more than one manager in one process (tests
	// that run two allocators at once).
	SeveralPerProcess bool
}

// AnnounceOptions configure the announcer and its embedded speaker.
type AnnounceOptions struct {
	announcectrl.Options
	// RouterID is the BGP identifier (IPv4), usually the node's address.
	RouterID netip.Addr
	// ASN is the default local AS (each BGPPeer names its own).
	ASN uint32
	// ListenPort for incoming BGP sessions; -1 dials out only.
	ListenPort int32
}

// New builds a manager with every controller set up; Start runs it.
func New(ctx context.Context, cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	scheme, err := apis.NewScheme()
	if err != nil {
		return nil, err
	}
	// Short leases bound how long allocation pauses when the leader dies.
	// They are safe here because correctness never rests on there being one
	// leader: the API server refuses a second record of an address.
	lease, renew, retry := orDefault(opts.LeaseDuration, 2*time.Second), orDefault(opts.RenewDeadline, 1500*time.Millisecond), orDefault(opts.RetryPeriod, 250*time.Millisecond)
	if opts.LeaderElectionNamespace == "" {
		opts.LeaderElectionNamespace = "eiplb-system"
	}
	if a := opts.Announce; a != nil && a.Namespace == "" {
		a.Namespace = opts.LeaderElectionNamespace
	}
	if opts.LeaderElectionID == "" {
		opts.LeaderElectionID = "eiplb-ipam"
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                serving.Metrics(opts.MetricsAddr, opts.MetricsInsecure),
		HealthProbeBindAddress: orDefaultStr(opts.ProbeAddr, "0"),
		PprofBindAddress:       orDefaultStr(opts.PprofAddr, "0"),
		Controller:             config.Controller{SkipNameValidation: &opts.SeveralPerProcess},
		Cache: cache.Options{DefaultTransform: slimCached, ByObject: map[client.Object]cache.ByObject{
			// Only the password Secrets of the manager's namespace are read.
			&corev1.Secret{}: {Namespaces: map[string]cache.Config{opts.LeaderElectionNamespace: {}}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	if opts.LeaderElection {
		// Elected IPAM: the controllers run in terms, on the replica
		// holding the Lease; the rest of the manager runs everywhere and
		// outlives a lost Lease (an API server outage).
		if err := ipamctrl.WarmInformers(ctx, mgr.GetCache()); err != nil {
			return nil, err
		}
		ipamOpts := opts.IPAM
		e, err := newIPAMElector(cfg, mgr, opts.LeaderElectionNamespace, opts.LeaderElectionID, lease, renew, retry,
			func(ctx context.Context, m ctrl.Manager) error { return ipamctrl.Setup(ctx, m, ipamOpts) })
		if err != nil {
			return nil, fmt.Errorf("IPAM leader election: %w", err)
		}
		if err := mgr.Add(e); err != nil {
			return nil, err
		}
	} else if err := ipamctrl.Setup(ctx, mgr, opts.IPAM); err != nil {
		return nil, err
	}
	if a := opts.Announce; a != nil {
		if err := setupAnnouncer(ctx, mgr, *a, opts.IPAM); err != nil {
			return nil, err
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

func setupAnnouncer(ctx context.Context, mgr ctrl.Manager, a AnnounceOptions, ipamOpts ipamctrl.Options) error {
	if a.NodeName == "" {
		return errors.New("the announcer needs the node name (--node-name or NODE_NAME)")
	}
	if a.Class == "" {
		a.Class = ipamOpts.Class
	}
	a.ServeNoClass = a.ServeNoClass || ipamOpts.ServeNoClass
	speaker, err := bgp.New(ctx, bgp.Config{RouterID: a.RouterID, ASN: a.ASN, ListenPort: a.ListenPort, Logger: ctrl.Log.WithName("bgp")})
	if err != nil {
		return err
	}
	if err := mgr.Add(speakerRunnable{speaker}); err != nil {
		return err
	}
	return announcectrl.Setup(mgr, speaker, a.Options)
}

// speakerRunnable stops the speaker when the manager stops. With graceful
// restart configured the sessions are left to close with the process, so
// the routers keep the routes for the restart time; otherwise a clean stop
// withdraws them at once.
type speakerRunnable struct{ s *bgp.Speaker }

func (r speakerRunnable) Start(ctx context.Context) error {
	<-ctx.Done()
	if !r.s.GracefulRestart() {
		stop, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r.s.Stop(stop)
	}
	return nil
}

func (speakerRunnable) NeedLeaderElection() bool { return false }

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

// slimCached drops from cached objects what no manager code reads and what
// makes most of their size: managed fields (the API server keeps them on
// writes that omit them), and a Node's image and volume lists (kilobytes
// per node in a real cluster).
func slimCached(o any) (any, error) {
	if m, ok := o.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	if n, ok := o.(*corev1.Node); ok {
		n.Status.Images, n.Status.VolumesInUse, n.Status.VolumesAttached = nil, nil, nil
	}
	return o, nil
}
