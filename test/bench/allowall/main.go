// Command allowall is a minimal authorization plugin that allows every
// request: the baseline BenchmarkPluginLatency compares divds with.
package main

import (
	"log"
	"net"
	"os"

	"github.com/docker/go-plugins-helpers/authorization"
)

type allowAll struct{}

func (allowAll) AuthZReq(authorization.Request) authorization.Response {
	return authorization.Response{Allow: true}
}

func (allowAll) AuthZRes(authorization.Request) authorization.Response {
	return authorization.Response{Allow: true}
}

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: allowall SOCKET")
	}
	l, err := net.Listen("unix", os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(authorization.NewHandler(allowAll{}).Serve(l))
}
