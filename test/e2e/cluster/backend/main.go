// Command backend is the cluster lab's test backend, a static binary in
// the image eiplb-test-backend (make images): it answers HTTP on PORT
// (default 8080) with "<POD_NAME> <client address>", and /healthz for the
// readiness probe. On SIGTERM it turns unready at once, keeps serving for
// DRAIN (default 3s, within the Pod's termination grace) so requests that
// were routed to it before its endpoint went are answered, then shuts down
// gracefully.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	port := env("PORT", "8080")
	pod := env("POD_NAME", "backend")
	drain, err := time.ParseDuration(env("DRAIN", "3s"))
	if err != nil {
		log.Fatalf("DRAIN: %v", err)
	}
	var terminating atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if terminating.Load() {
			http.Error(w, "terminating", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "%s %s", pod, host)
	})
	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		terminating.Store(true)
		log.Printf("terminating: serving for %s more", drain)
		time.Sleep(drain) // the drain period itself, not a synchronisation
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	log.Printf("%s listening on :%s", pod, port)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
