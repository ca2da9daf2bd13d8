// Command etcd is the upstream etcd server at the version k8s.io/kubernetes pins (build/dependencies.yaml),
// because distribution packages lag behind what current Kubernetes needs. It mirrors go.etcd.io/etcd/v3's main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
