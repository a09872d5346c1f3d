package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"

	"github.com/divds/divds/report"
	"github.com/divds/divds/scanner/index"
	"github.com/divds/divds/scanner/layerfs"
)

// Docker reads an image from the local daemon by name, ID or digest.
//
// With the overlay2 driver it reads the layer directories the daemon
// reports (GraphDriver.Data) directly, about 500 times faster than
// `docker save` for a 100 MB image. When the driver is another, or a
// directory cannot be opened (another mount namespace, the containerd
// image store), it streams ImageSave instead, never writing the image to
// disk.
type Docker struct {
	Client *client.Client
	Ref    string
	// Platform (os/arch[/variant]) picks one platform of an image of
	// several (the containerd store); empty: the daemon's default.
	Platform string
	// ForceSave skips the direct read (for tests and benchmarks).
	ForceSave bool
	// Containerd, when set, reads images of the containerd image store
	// from their snapshot directories; without it they are streamed.
	Containerd *ContainerdStore
}

// Describe implements Source.
func (d Docker) Describe() string { return "image " + d.Ref }

// errFallback marks a direct-read failure that ImageSave may overcome.
var errFallback = errors.New("layer directories not readable")

// Read implements Source.
func (d Docker) Read(ctx context.Context, lim layerfs.Limits, cached Cached) (*Image, error) {
	// The plugin names images by ID. On the containerd store such an image
	// is read without asking the daemon: its inspect and history cost
	// tens of milliseconds each there, while containerd's content store
	// gives the config, and its snapshotter the layers, in a few.
	if d.Containerd != nil && !d.ForceSave && strings.HasPrefix(d.Ref, "sha256:") {
		img, err := d.readContainerd(ctx, lim, cached)
		if err == nil || !errors.Is(err, errFallback) {
			return img, err
		}
	}
	var inspOpts []client.ImageInspectOption
	var histOpts []client.ImageHistoryOption
	var saveOpts []client.ImageSaveOption
	if d.Platform != "" {
		p, err := platforms.Parse(d.Platform)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", d.Platform, err)
		}
		inspOpts = append(inspOpts, client.ImageInspectWithPlatform(&p))
		histOpts = append(histOpts, client.ImageHistoryWithPlatform(p))
		saveOpts = append(saveOpts, client.ImageSaveWithPlatforms(p))
	}
	res, err := d.Client.ImageInspect(ctx, d.Ref, inspOpts...)
	insp := res.InspectResponse
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("no such image in the daemon: %s", d.Ref)
		}
		return nil, fmt.Errorf("inspect %s: %w", d.Ref, err)
	}
	img := &Image{Meta: metaFromInspect(insp)}
	// Of one platform of an index, the inspect's ID is that platform's
	// config digest, which the containerd store does not find images by:
	// history and save go by the reference, for the platform.
	byRef := insp.ID
	if d.Platform != "" {
		byRef = d.Ref
	}
	// The build commands come from the history, asked for while the
	// layers are read (on the containerd store it costs the daemon as
	// much as the read).
	hist := make(chan []image.HistoryResponseItem, 1)
	go func() {
		h, err := d.Client.ImageHistory(ctx, byRef, histOpts...)
		if err != nil {
			h.Items = nil
		}
		hist <- h.Items
	}()
	defer func() {
		items := <-hist
		if cmds := layerCommands(items, len(insp.RootFS.Layers)); cmds != nil && len(cmds) == len(img.Meta.Layers) {
			for i := range img.Meta.Layers {
				img.Meta.Layers[i].CreatedBy = cmds[i]
			}
		}
	}()
	if !d.ForceSave {
		layers, err := readOverlay(ctx, insp, lim, cached)
		// The containerd store reports no graph driver (API 1.52 on), or
		// "overlayfs" without directories.
		if errors.Is(err, errFallback) && d.Containerd != nil && (insp.GraphDriver == nil || insp.GraphDriver.Name == "overlayfs") {
			layers, err = d.readSnapshots(ctx, insp, lim, cached)
		}
		switch {
		case err == nil:
			img.Layers = layers
			return img, nil
		case !errors.Is(err, errFallback):
			return nil, err
		}
		img.Warnings = append(img.Warnings, fmt.Sprintf("%v; streamed the image from the daemon instead", err))
	}
	rc, err := d.Client.ImageSave(ctx, []string{byRef}, saveOpts...)
	if err != nil {
		return nil, fmt.Errorf("save %s: %w", d.Ref, err)
	}
	defer rc.Close()
	saved, err := ReadArchive(ctx, rc, "", lim)
	if err != nil {
		return nil, fmt.Errorf("save %s: %w", d.Ref, err)
	}
	if len(saved.Layers) != len(img.Meta.Layers) {
		return nil, fmt.Errorf("save %s: %d layers streamed, %d inspected", d.Ref, len(saved.Layers), len(img.Meta.Layers))
	}
	for i, l := range saved.Layers {
		if l.DiffID != img.Meta.Layers[i].DiffID {
			return nil, fmt.Errorf("save %s: layer %d is %s, inspected as %s", d.Ref, i+1, l.DiffID, img.Meta.Layers[i].DiffID)
		}
	}
	img.Layers = saved.Layers
	img.Warnings = append(img.Warnings, saved.Warnings...)
	return img, nil
}

func metaFromInspect(insp image.InspectResponse) report.Image {
	m := report.Image{
		ID: insp.ID, Names: append([]string{}, insp.RepoTags...), Digests: PulledDigests(insp),
		OS: insp.Os, Architecture: insp.Architecture,
	}
	if t, err := time.Parse(time.RFC3339Nano, insp.Created); err == nil {
		m.Created = &t
	}
	for _, id := range insp.RootFS.Layers {
		m.Layers = append(m.Layers, report.Layer{DiffID: id})
	}
	return m
}

// layerCommands maps history to layers. The API does not say which
// entries made a layer; entries with a size do, when they are as many as
// the layers.
func layerCommands(hist []image.HistoryResponseItem, layers int) []string {
	h := slices.Clone(hist)
	slices.Reverse(h) // the API lists the newest first
	var sized, all []string
	for _, e := range h {
		all = append(all, e.CreatedBy)
		if e.Size > 0 {
			sized = append(sized, e.CreatedBy)
		}
	}
	switch {
	case len(sized) == layers:
		return sized
	case len(all) == layers:
		return all
	}
	return nil
}

// readOverlay reads overlay2's diff directories: LowerDir lists the
// lower layers topmost first, UpperDir is the top layer.
func readOverlay(ctx context.Context, insp image.InspectResponse, lim layerfs.Limits, cached Cached) ([]index.Layer, error) {
	// The containerd image store reports no graph driver from API 1.52
	// on (and "overlayfs" with no directories before).
	if insp.GraphDriver == nil || insp.GraphDriver.Name != "overlay2" {
		name := "none reported"
		if insp.GraphDriver != nil {
			name = insp.GraphDriver.Name
		}
		return nil, fmt.Errorf("%w: storage driver %q", errFallback, name)
	}
	var dirs []string
	if lower := insp.GraphDriver.Data["LowerDir"]; lower != "" {
		dirs = strings.Split(lower, ":")
		slices.Reverse(dirs)
	}
	if upper := insp.GraphDriver.Data["UpperDir"]; upper != "" {
		dirs = append(dirs, upper)
	}
	ids := insp.RootFS.Layers
	if len(dirs) != len(ids) {
		return nil, fmt.Errorf("%w: %d layer directories for %d layers", errFallback, len(dirs), len(ids))
	}
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%w: %s: %v", errFallback, dir, err)
		}
	}
	return readLayerDirs(ctx, dirs, ids, lim, cached)
}

// readSnapshots reads an image of the containerd store from its snapshot
// directories, checking that they hold the layers the daemon inspected.
func (d Docker) readSnapshots(ctx context.Context, insp image.InspectResponse, lim layerfs.Limits, cached Cached) ([]index.Layer, error) {
	if d.Containerd == nil {
		return nil, fmt.Errorf("%w: the containerd image store, and no containerd connection", errFallback)
	}
	// The daemon's diff IDs, for the platform inspected, fix the
	// snapshots: no image lookup in containerd is needed.
	ids := insp.RootFS.Layers
	dirs, err := d.Containerd.layerDirs(ctx, ids)
	if err != nil {
		return nil, err
	}
	return readLayerDirs(ctx, dirs, ids, lim, cached)
}

// PulledDigests are the repository digests of an image that a registry
// vouches for. The classic store records one when the image is pulled from
// (or pushed to) a repository. The containerd store reports every name of
// an image with its digest, so a docker tag, open to every user, would
// make one; there only the repositories the image was pulled from (or
// pushed to), in its Identity (API 1.53 on), count. Without it, none.
func PulledDigests(insp image.InspectResponse) []string {
	if insp.Descriptor == nil { // the classic store
		return append([]string{}, insp.RepoDigests...)
	}
	if insp.Identity == nil {
		return nil
	}
	var out []string
	for _, rd := range insp.RepoDigests {
		n, err := reference.ParseNormalizedNamed(rd)
		if err != nil {
			continue
		}
		for _, p := range insp.Identity.Pull {
			if p.Repository == n.Name() || p.Repository == withoutPort(n) {
				out = append(out, rd)
				break
			}
		}
	}
	return out
}

// withoutPort is a repository's name without its registry's port: Docker
// 29 reports a pull from 127.0.0.1:5000/app as 127.0.0.1/app in its
// identity (the port is lost in containerd's label key). Such an identity
// vouches for the repository on any port of that host.
func withoutPort(n reference.Named) string {
	domain, path := reference.Domain(n), reference.Path(n)
	if host, _, ok := strings.Cut(domain, ":"); ok && !strings.HasPrefix(domain, "[") {
		domain = host
	}
	return domain + "/" + path
}

// readContainerd reads an image of the containerd store by its ID (the
// target digest) from containerd alone: the config of the platform from
// the content store, the layers from their snapshot directories, the
// names from containerd's image records. It reports no repository
// digests: without the daemon's pull identity none is vouched for.
func (d Docker) readContainerd(ctx context.Context, lim layerfs.Limits, cached Cached) (*Image, error) {
	names := make(chan []string, 1)
	go func() { names <- d.Containerd.names(ctx, d.Ref) }()
	cfg, err := d.Containerd.imageConfig(ctx, d.Ref, d.Platform)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(cfg.RootFS.DiffIDs))
	for i, id := range cfg.RootFS.DiffIDs {
		ids[i] = id.String()
	}
	dirs, err := d.Containerd.layerDirs(ctx, ids)
	if err != nil {
		return nil, err
	}
	layers, err := readLayerDirs(ctx, dirs, ids, lim, cached)
	if err != nil {
		return nil, err
	}
	m := report.Image{ID: d.Ref, OS: cfg.OS, Architecture: cfg.Architecture, Created: cfg.Created}
	for _, n := range <-names {
		if named, err := reference.ParseNormalizedNamed(n); err == nil {
			n = reference.FamiliarString(named)
		}
		m.Names = append(m.Names, n)
	}
	// The history entries that made a layer, in order.
	var cmds []string
	for _, h := range cfg.History {
		if !h.EmptyLayer {
			cmds = append(cmds, h.CreatedBy)
		}
	}
	for i, id := range ids {
		l := report.Layer{DiffID: id}
		if len(cmds) == len(ids) {
			l.CreatedBy = cmds[i]
		}
		m.Layers = append(m.Layers, l)
	}
	return &Image{Meta: m, Layers: layers}, nil
}
