// The Go exec provider users run today, reduced to its fixed costs: a
// static binary that links encoding/json, net/http and crypto/tls as every
// vendor provider does (ecr-credential-provider, the Artifactory and GCP
// providers), decodes the request and answers a fixed credential for the
// image's registry. It makes no network call, so its figure is the Go
// runtime's start plus JSON, the floor any Go provider pays per exec.
// Built by ./scripts/bench when `go` is on PATH; never part of the product.
package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

type request struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Image      string `json:"image"`
}

type authConfig struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type response struct {
	Kind          string                `json:"kind"`
	APIVersion    string                `json:"apiVersion"`
	CacheKeyType  string                `json:"cacheKeyType"`
	CacheDuration string                `json:"cacheDuration"`
	Auth          map[string]authConfig `json:"auth"`
}

// client is what a real provider builds before its first call; keeping it
// reachable links net/http and crypto/tls into the binary as they are in
// every vendor provider.
var client = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}},
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "decode request:", err)
		os.Exit(1)
	}
	if os.Getenv("GO_PROVIDER_FETCH") != "" {
		// Never set by the benchmark; here so the linker keeps the client.
		if _, err := client.Get(os.Getenv("GO_PROVIDER_FETCH")); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	registry := strings.SplitN(req.Image, "/", 2)[0]
	resp := response{
		Kind:          "CredentialProviderResponse",
		APIVersion:    req.APIVersion,
		CacheKeyType:  "Registry",
		CacheDuration: "5m0s",
		Auth:          map[string]authConfig{registry: {Username: "robot", Password: "go-password"}},
	}
	if err := json.NewEncoder(os.Stdout).Encode(&resp); err != nil {
		fmt.Fprintln(os.Stderr, "encode response:", err)
		os.Exit(1)
	}
}
