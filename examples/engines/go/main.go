// c2d-go-engine: a Compute-to-Data engine plugin written in Go on stock HashiCorp go-plugin
// (Debian's golang-github-hashicorp-go-plugin-dev, 1.0.x), to show that the node loads unmodified
// go-plugin plugins. It runs jobs as local processes, like plugins/external_stub. See
// docs/engine-plugins.md, "Writing an engine in Go".
package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	enginev1 "c2dexample/gen/enginev1"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

const (
	apiVersion = 1
	// The node's handshake cookie (sdk/c2d/plugin/handshake.py).
	cookieKey   = "C2D_PLUGIN_MAGIC_COOKIE"
	cookieValue = "6f1c3c0e9d5a4b0f8e2d7a1c5b9e3f70c2d-engine"
)

// enginePlugin registers the engine API on go-plugin's gRPC server (next to go-plugin's own
// health, controller and broker services).
type enginePlugin struct {
	plugin.NetRPCUnsupportedPlugin
	engine *engine
}

func (p *enginePlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	enginev1.RegisterComputeEngineServiceServer(s, p.engine)
	return nil
}

func (p *enginePlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return enginev1.NewComputeEngineServiceClient(c), nil
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "shim" {
		os.Exit(runShim(os.Args[2]))
	}
	// Logs: hclog JSON lines on the real stderr (go-plugin swaps os.Stderr for a pipe in Serve).
	logger := hclog.New(&hclog.LoggerOptions{Name: engineName, Level: hclog.Info, Output: os.Stderr, JSONFormat: true})
	// go-plugin falls back to its lowest version when the client offers none it has; the node wants
	// a plugin that cannot speak any offered version to say so and exit 1.
	if offered := os.Getenv("PLUGIN_PROTOCOL_VERSIONS"); offered != "" && !offers(offered, apiVersion) {
		logger.Error("no common engine API version", "host_offers", offered, "plugin_speaks", apiVersion)
		os.Exit(1)
	}
	go exitWithParent(logger)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion: apiVersion, MagicCookieKey: cookieKey, MagicCookieValue: cookieValue,
		},
		Plugins:    plugin.PluginSet{"engine": &enginePlugin{engine: newEngine(logger)}},
		GRPCServer: plugin.DefaultGRPCServer,
		Logger:     logger,
	})
}

func offers(list string, version int) bool {
	for _, v := range strings.Split(list, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n == version {
			return true
		}
	}
	return false
}

// exitWithParent: the node sets the kernel's parent-death signal too; this covers a node that didn't.
func exitWithParent(logger hclog.Logger) {
	parent := os.Getppid()
	if want, err := strconv.Atoi(os.Getenv("C2D_PLUGIN_PARENT_PID")); err == nil {
		parent = want
	}
	for range time.Tick(time.Second) {
		if os.Getppid() != parent {
			logger.Info("the node is gone; exiting")
			os.Exit(0)
		}
	}
}
