package main

import (
	"errors"
	"fmt"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"time"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"

	"github.com/divds/divds/scanner"
	"github.com/divds/divds/scanner/cache"
	"github.com/divds/divds/scanner/source"
	"github.com/divds/divds/scanner/vulnstore"
)

func (a *app) scanCmd() *cobra.Command {
	var (
		out        outputFlags
		input      string
		rootfs     string
		remote     string
		dockerHost string
		forceSave  bool
		platform   string
		noCache    bool
		insecure   bool
	)
	cmd := &cobra.Command{
		Use:   "scan [IMAGE]",
		Short: "Diagnose an image: its OS packages per layer, their known vulnerabilities, and the verdict",
		Long: `Diagnose one image, given as exactly one of:
  IMAGE            an image in the local Docker daemon (name, ID or digest)
  --input FILE     a ` + "`docker save`" + ` archive (plain or gzip)
  --rootfs DIR     a root filesystem directory, read as one layer
  --remote REF     an image in a registry (anonymous, or credentials from
                   the docker config.json of $DOCKER_CONFIG or ~/.docker)

The table lists every finding with its severity, package, installed and
fixed versions, whether the policy approves it, and the layer that brought
it; the last line is the verdict: the image score against the threshold.
Exit codes: 0 allowed, 2 denied by policy, 1 error.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := out.validate(); err != nil {
				return err
			}
			n := 0
			for _, set := range []bool{len(args) == 1, input != "", rootfs != "", remote != ""} {
				if set {
					n++
				}
			}
			if n != 1 {
				return errors.New("give exactly one of IMAGE, --input FILE, --rootfs DIR or --remote REF")
			}
			pol, err := a.loadPolicy()
			if err != nil {
				return err
			}
			store, err := vulnstore.Open(vulnstore.Path(a.stateDir))
			if err != nil {
				return fmt.Errorf("%w (or `divds-authz db update --sample` for the demo data)", err)
			}
			defer store.Close()
			if oldest, _ := store.OldestUpdate(); !oldest.IsZero() && time.Since(oldest) > pol.DB.MaxAge {
				a.log.Warnf("the vulnerability database is older than db.max_age (%s): findings may be missing; run `divds-authz db update`", pol.Normalized().DB.MaxAge)
			}
			if store.Meta().Sample {
				a.log.Warn("scanning with the SAMPLE database: demo data, not a real diagnosis")
			}
			var src source.Source
			switch {
			case input != "":
				src = source.Archive{Path: input}
			case rootfs != "":
				src = source.Rootfs{Dir: rootfs}
			case remote != "":
				r := source.Registry{Ref: remote, Insecure: insecure}
				if platform != "" {
					p, err := v1.ParsePlatform(platform)
					if err != nil {
						return fmt.Errorf("--platform %q: %w", platform, err)
					}
					r.Platform = p
				}
				src = r
			default:
				c, err := dockerClient(dockerHost)
				if err != nil {
					return err
				}
				defer c.Close()
				stores := &source.StoreFinder{}
				defer stores.Close()
				src = source.Docker{Client: c, Ref: args[0], Platform: platform, ForceSave: forceSave, Containerd: stores.Find(ctx, c)}
			}
			opts := scanner.Options{}
			if !noCache {
				if c, err := cache.Open(a.stateDir, 200*time.Millisecond, a.log); err == nil {
					defer c.Close()
					opts.Cache = c
				} else {
					a.log.Debugf("scanning without the cache: %v", err)
				}
			}
			rep, st, err := scanner.New(opts).Scan(ctx, src, store)
			if err != nil {
				return err
			}
			a.log.Debugf("scan: %d layers read, %d from cache, index cached %v; read %s, index %s, match %s",
				st.LayersRead, st.LayersCached, st.IndexCached, st.Read, st.Index, st.Match)
			for _, w := range rep.Warnings {
				a.log.Warn(w)
			}
			res := rep.Evaluate(pol, time.Now())
			return a.printVerdict(rep, res, out)
		},
	}
	out.register(cmd)
	f := cmd.Flags()
	f.StringVar(&input, "input", "", "a `docker save` archive (plain or gzip)")
	f.StringVar(&rootfs, "rootfs", "", "a root filesystem directory")
	f.StringVar(&remote, "remote", "", "an image reference in a registry")
	f.BoolVar(&insecure, "insecure", false, "allow plain HTTP to a registry that is not on loopback")
	f.StringVar(&dockerHost, "docker-host", "", "the Docker daemon (default: $DOCKER_HOST or the local socket)")
	f.BoolVar(&forceSave, "force-save", false, "stream the image with `docker save` instead of reading its layer directories")
	f.StringVar(&platform, "platform", "", "of an image of several platforms (the containerd image store), the one to scan, as os/arch[/variant] (default: the host's)")
	f.BoolVar(&noCache, "no-cache", false, "neither read nor write the scan cache")
	return cmd
}

// dockerClient connects to host, or as DOCKER_HOST and the docker CLI's
// defaults say. The moby client negotiates the API version on its first
// request, once, under a lock (the docker/docker client before it raced
// with its own event stream there): 1.41 with Debian's dockerd 20.10,
// 1.56 with Docker 29, whose platform and manifest options the gates use.
func dockerClient(host string) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return c, nil
}
