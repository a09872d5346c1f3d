// Package dockerd adapts the Docker client to what the gates and the
// arrival scanner need of the daemon.
package dockerd

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/divds/divds/authz"
	"github.com/divds/divds/scanner/source"
)

// Daemon implements authz.Daemon over a Docker client.
type Daemon struct {
	C *client.Client
	// api is the negotiated API version, once known (New sets it up;
	// without it every check pings).
	api *atomic.Pointer[string]
}

// New returns a Daemon over c.
func New(c *client.Client) Daemon { return Daemon{C: c, api: new(atomic.Pointer[string])} }

var _ authz.Daemon = Daemon{}

// Inspect implements authz.Daemon. From API 1.48 on (Docker 28 and 29) it
// asks for the image's manifests: on the containerd store, the platforms
// an index ID holds are part of what a gate must judge.
func (d Daemon) Inspect(ctx context.Context, ref string) (authz.ImageInfo, error) {
	// A daemon whose version cannot be told is not guessed at: judged
	// without its manifests, an index would pass on one platform.
	manifests, err := d.apiAtLeast(ctx, "1.48")
	if err != nil {
		return authz.ImageInfo{}, err
	}
	var opts []client.ImageInspectOption
	if manifests {
		opts = append(opts, client.ImageInspectWithManifests(true))
	}
	insp, err := d.C.ImageInspect(ctx, ref, opts...)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return authz.ImageInfo{}, fmt.Errorf("%w: %s", authz.ErrNotFound, ref)
		}
		return authz.ImageInfo{}, err
	}
	// On the containerd store a docker tag makes a repository digest:
	// only the pulled ones vouch for names (source.PulledDigests).
	info := authz.ImageInfo{ID: insp.ID, RepoTags: insp.RepoTags, RepoDigests: source.PulledDigests(insp.InspectResponse)}
	for _, m := range insp.Manifests {
		if m.Kind == image.ManifestKindImage && m.Available && m.ImageData != nil {
			if pl := authz.NormalPlatform(m.ImageData.Platform); !slices.Contains(info.Platforms, pl) {
				info.Platforms = append(info.Platforms, pl)
			}
		}
	}
	return info, nil
}

// apiAtLeast reports whether the negotiated API version is at least v.
// The version is read only after a negotiating ping succeeded: the client
// writes it during negotiation.
func (d Daemon) apiAtLeast(ctx context.Context, v string) (bool, error) {
	if d.api != nil {
		if known := d.api.Load(); known != nil {
			return !versions.LessThan(*known, v), nil
		}
	}
	if _, err := d.C.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return false, fmt.Errorf("negotiate the API version: %w", err)
	}
	known := d.C.ClientVersion()
	if d.api != nil {
		d.api.Store(&known)
	}
	return !versions.LessThan(known, v), nil
}

// platformOf is the platform of the image manifest a container runs, when
// the daemon says (API 1.48 on).
func platformOf(m *ocispec.Descriptor) string {
	if m == nil || m.Platform == nil {
		return ""
	}
	return authz.NormalPlatform(*m.Platform)
}

// RemovePlatforms implements authz.Daemon (API 1.50 on).
func (d Daemon) RemovePlatforms(ctx context.Context, id string, plats []string) error {
	if ok, err := d.apiAtLeast(ctx, "1.50"); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("removing one platform of an image needs Docker API 1.50 (Docker 28.3) or later")
	}
	opts := client.ImageRemoveOptions{Force: true}
	for _, s := range plats {
		p, err := platforms.Parse(s)
		if err != nil {
			return fmt.Errorf("platform %q: %w", s, err)
		}
		opts.Platforms = append(opts.Platforms, p)
	}
	_, err := d.C.ImageRemove(ctx, id, opts)
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%w: %s", authz.ErrNotFound, id)
	}
	return err
}

// Repo implements authz.Daemon.
func (d Daemon) Repo(ctx context.Context, repo string) ([]authz.ImageInfo, error) {
	list, err := d.C.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("reference", repo)})
	if err != nil {
		return nil, err
	}
	out := make([]authz.ImageInfo, 0, len(list.Items))
	for _, s := range list.Items {
		out = append(out, authz.ImageInfo{ID: s.ID, RepoTags: s.RepoTags, RepoDigests: s.RepoDigests})
	}
	return out, nil
}

// Untag implements authz.Daemon: a forced removal of one reference,
// which deletes the image only when no other reference holds it.
func (d Daemon) Untag(ctx context.Context, ref string) error {
	_, err := d.C.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%w: %s", authz.ErrNotFound, ref)
	}
	return err
}

// Container implements authz.Daemon.
func (d Daemon) Container(ctx context.Context, name string) (authz.Container, error) {
	res, err := d.C.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return authz.Container{}, fmt.Errorf("%w: container %s", authz.ErrNotFound, name)
		}
		return authz.Container{}, err
	}
	c := res.Container
	out := authz.Container{ID: c.ID, Name: strings.TrimPrefix(c.Name, "/"), ImageID: c.Image}
	if c.Config != nil {
		out.Image = c.Config.Image
	}
	out.Platform = platformOf(c.ImageManifestDescriptor)
	return out, nil
}

// subscribe opens the event stream once the daemon answers a ping. A
// daemon still starting up may accept the connection and never answer
// it: a subscription whose response has not begun within 10 s is
// cancelled (and reported on errs) so that the caller retries.
func (d Daemon) subscribe(ctx context.Context, since time.Time) (<-chan events.Message, <-chan error, context.CancelFunc) {
	sub, cancel := context.WithCancel(ctx)
	pingCtx, pingCancel := context.WithTimeout(sub, 5*time.Second)
	_, err := d.C.Ping(pingCtx, client.PingOptions{NegotiateAPIVersion: true})
	pingCancel()
	if err != nil {
		errs := make(chan error, 1)
		errs <- err
		return nil, errs, cancel
	}
	timer := time.AfterFunc(10*time.Second, cancel)
	res := d.C.Events(sub, client.EventsListOptions{
		Since:   strconv.FormatInt(since.Unix(), 10),
		Filters: make(client.Filters).Add("type", string(events.ImageEventType), string(events.ContainerEventType)),
	})
	timer.Stop()
	return res.Messages, res.Err, cancel
}

// PluginName implements authz.Daemon.
func (d Daemon) PluginName(ctx context.Context, ref string) (string, error) {
	res, err := d.C.PluginInspect(ctx, ref, client.PluginInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("%w: plugin %s", authz.ErrNotFound, ref)
		}
		return "", err
	}
	return res.Plugin.Name, nil
}

// arrivalActions are the image events after which an image may be new.
var arrivalActions = map[events.Action]bool{
	events.ActionPull: true, events.ActionLoad: true, events.ActionImport: true,
	events.ActionTag: true, events.ActionPush: true, events.ActionCreate: true,
}

// Handlers are what Follow calls; none may block for long, and any may
// be nil.
type Handlers struct {
	// Arrived gets the ID of every image that may be new: pulled,
	// loaded, imported, tagged, pushed, or the result of a build (which
	// the daemon reports as a tag).
	Arrived func(ctx context.Context, imageID string)
	// Connected is called each time the stream (re)connects: a daemon
	// that just started has started the containers of its restart
	// policies without any API call.
	Connected func()
	// Started is called when a container starts, through the API or by
	// itself (a restart policy, a swarm task).
	Started func(containerID string)
	// Died is called when a container stops running.
	Died func(containerID string)
	// Pulled gets the reference of every pull, whichever way it came: a
	// docker pull, a classic build's base image (which never passes
	// /images/create), or one that ended while the plugin was down.
	// Arrived is not called for pulls when it is set.
	Pulled func(ctx context.Context, ref string)
	// Since is where the stream starts (zero: a second ago): the daemon
	// replays the events it still keeps from then on.
	Since time.Time
	// Handled is called with the time of each event once it was handled,
	// so that a restarted plugin can replay from there.
	Handled func(time.Time)
}

// Follow follows the daemon's image and container events until ctx
// ends, reconnecting when the daemon restarts.
func (d Daemon) Follow(ctx context.Context, log logrus.FieldLogger, h Handlers) {
	backoff := time.Second
	// Events the daemon emitted while the stream was down (dockerd
	// restarting, or not up yet when the plugin started) are replayed
	// from here: the daemon keeps its recent events.
	since := h.Since
	if since.IsZero() {
		since = time.Now().Add(-time.Second)
	}
	for ctx.Err() == nil {
		msgs, errs, cancel := d.subscribe(ctx, since)
		if msgs != nil && h.Connected != nil {
			h.Connected()
		}
		connectedAt := time.Now()
	loop:
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-msgs:
				if t := time.Unix(0, m.TimeNano); t.After(since) {
					since = t
				}
				log.WithFields(logrus.Fields{"type": m.Type, "action": m.Action, "id": m.Actor.ID}).Debug("docker event")
				switch {
				case m.Actor.ID == "":
				case m.Type == events.ImageEventType && m.Action == events.ActionPull && h.Pulled != nil:
					h.Pulled(ctx, m.Actor.ID)
				case m.Type == events.ImageEventType && arrivalActions[m.Action] && h.Arrived != nil:
					h.Arrived(ctx, m.Actor.ID)
				case m.Type == events.ContainerEventType && m.Action == events.ActionStart && h.Started != nil:
					h.Started(m.Actor.ID)
				case m.Type == events.ContainerEventType && m.Action == events.ActionDie && h.Died != nil:
					h.Died(m.Actor.ID)
				}
				if h.Handled != nil {
					h.Handled(time.Unix(0, m.TimeNano))
				}
			case err := <-errs:
				if ctx.Err() != nil {
					return
				}
				if time.Since(connectedAt) > time.Minute {
					backoff = time.Second
				}
				log.WithError(err).Warnf("docker events: disconnected; reconnecting in %s", backoff)
				break loop
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// PreviousServiceImage implements authz.Daemon.
func (d Daemon) PreviousServiceImage(ctx context.Context, service string) (string, error) {
	res, err := d.C.ServiceInspect(ctx, service, client.ServiceInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("%w: service %s", authz.ErrNotFound, service)
		}
		return "", err
	}
	prev := res.Service.PreviousSpec
	if prev == nil || prev.TaskTemplate.ContainerSpec == nil || prev.TaskTemplate.ContainerSpec.Image == "" {
		return "", fmt.Errorf("%w: previous spec of service %s", authz.ErrNotFound, service)
	}
	return prev.TaskTemplate.ContainerSpec.Image, nil
}

// RunningContainers implements authz.Daemon.
func (d Daemon) RunningContainers(ctx context.Context, ids ...string) ([]authz.Container, error) {
	opts := client.ContainerListOptions{}
	if len(ids) > 0 {
		opts.Filters = make(client.Filters).Add("id", ids...)
	}
	list, err := d.C.ContainerList(ctx, opts)
	if err != nil {
		return nil, err
	}
	out := make([]authz.Container, 0, len(list.Items))
	for _, c := range list.Items {
		name := c.ID
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		out = append(out, authz.Container{ID: c.ID, Name: name, Image: c.Image, ImageID: c.ImageID, Platform: platformOf(c.ImageManifestDescriptor)})
	}
	return out, nil
}

// RemoveContainer implements authz.Daemon.
func (d Daemon) RemoveContainer(ctx context.Context, id string) error {
	_, err := d.C.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%w: container %s", authz.ErrNotFound, id)
	}
	return err
}

// StopContainer implements authz.Daemon, with the container's own stop
// timeout. Its restart policy is set to "no" first: with "always", dockerd
// starts a stopped container again at its next start.
func (d Daemon) StopContainer(ctx context.Context, id string) error {
	_, uerr := d.C.ContainerUpdate(ctx, id, client.ContainerUpdateOptions{RestartPolicy: &container.RestartPolicy{Name: container.RestartPolicyDisabled}})
	if _, err := d.C.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil {
		return err
	}
	if uerr != nil {
		return fmt.Errorf("stopped, but its restart policy could not be cleared, so dockerd may start it again: %w", uerr)
	}
	return nil
}
