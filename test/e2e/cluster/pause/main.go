// Command pause is the cluster lab's sandbox ("pause") container, the
// image eiplb-test-pause (make images): containerd's sandbox_image, since
// the lab cannot pull the usual one. It holds the Pod's namespaces and
// exits on SIGTERM or SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
