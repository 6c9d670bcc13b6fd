// Command eiplb-agent is the per-node data plane of eiplb. The nftables data
// plane and the liveness protocol are not built yet; until then the agent
// only says so, so that no deployment mistakes it for a working one.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "eiplb-agent: the node data plane is not implemented yet")
	os.Exit(2)
}
