package source

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/client"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/divds/divds/scanner/index"
	"github.com/divds/divds/scanner/layerfs"
)

// ContainerdStore reads images of Docker's containerd image store (Docker
// 29's default) as containerd keeps them: each layer a committed snapshot
// of the overlayfs snapshotter, whose directory is read in place with the
// same in-root, whiteout-aware reads as overlay2's. No layer is copied or
// decompressed, so a read costs what the overlay2 read costs, whatever
// the image's size.
//
// The zero value is not usable: the daemon's own `docker info` names the
// socket, the namespace and the snapshotter (ContainerdFromInfo).
type ContainerdStore struct {
	// Address is containerd's socket.
	Address string
	// Namespace holds Docker's images ("moby" by default).
	Namespace string
	// Snapshotter is the snapshotter Docker unpacks into; only
	// "overlayfs" keeps plain directories that can be read in place.
	Snapshotter string

	mu     sync.Mutex
	client *containerd.Client
}

// errNotDirs marks a store whose layers are not plain directories (another
// snapshotter): the caller streams the image instead.
var errNotDirs = fmt.Errorf("%w: the containerd snapshotter does not keep layer directories", errFallback)

func (s *ContainerdStore) conn() (*containerd.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	c, err := containerd.New(s.Address, containerd.WithDefaultNamespace(s.Namespace), containerd.WithTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("%w: containerd at %s: %v", errFallback, s.Address, err)
	}
	s.client = c
	return c, nil
}

// Close closes the connection to containerd.
func (s *ContainerdStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		return nil
	}
	err := s.client.Close()
	s.client = nil
	return err
}

// layerDirs returns the directory of each layer whose diff IDs the
// daemon reported (bottom first). containerd's overlayfs snapshotter
// commits each unpacked layer under its chain ID, which the diff IDs fix:
// the directories hold exactly those layers. A read-only view of the top
// one, mounted as overlayfs over all of them, names the directories; the
// view is removed before returning, and the directories stay as long as
// the image does.
func (s *ContainerdStore) layerDirs(ctx context.Context, diffIDs []string) ([]string, error) {
	if s.Snapshotter != "overlayfs" {
		return nil, errNotDirs
	}
	if len(diffIDs) == 0 {
		return nil, nil
	}
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	ctx = namespaces.WithNamespace(ctx, s.Namespace)
	ds := make([]digest.Digest, len(diffIDs))
	for i, id := range diffIDs {
		if ds[i], err = digest.Parse(id); err != nil {
			return nil, fmt.Errorf("layer %d: diff ID %q: %w", i+1, id, err)
		}
	}
	chain := identity.ChainIDs(ds)
	top := chain[len(chain)-1].String()

	// The view is a garbage-collection root while it exists (a lease
	// would cost two more of containerd's synced transactions per read).
	sn := c.SnapshotService(s.Snapshotter)
	key := "divds-view-" + randomHex()
	mounts, err := sn.View(ctx, key, top, snapshots.WithLabels(map[string]string{"containerd.io/gc.root": time.Now().UTC().Format(time.RFC3339)}))
	if err != nil {
		// Not unpacked for this snapshotter (a pull for another
		// platform keeps only content): stream it.
		return nil, fmt.Errorf("%w: snapshot %s: %v", errFallback, top, err)
	}
	// The directories are the committed snapshots', which outlive the
	// view: it is removed off the read's path.
	defer func() { go sn.Remove(context.WithoutCancel(ctx), key) }()
	dirs, err := viewLowerDirs(mounts)
	if err != nil {
		return nil, err
	}
	if len(dirs) != len(diffIDs) {
		return nil, fmt.Errorf("%w: %d snapshot directories for %d layers", errFallback, len(dirs), len(diffIDs))
	}
	return dirs, nil
}

// viewLowerDirs reads a read-only view's mounts: one layer is a bind mount
// of its directory, several an overlay whose lowerdir lists them topmost
// first. Returned bottom first.
func viewLowerDirs(mounts []mount.Mount) ([]string, error) {
	if len(mounts) != 1 {
		return nil, fmt.Errorf("%w: a view of %d mounts", errFallback, len(mounts))
	}
	m := mounts[0]
	switch m.Type {
	case "bind", "rbind":
		if !filepath.IsAbs(m.Source) {
			return nil, fmt.Errorf("%w: bind source %q is not absolute", errFallback, m.Source)
		}
		return []string{m.Source}, nil
	case "overlay":
		for _, o := range m.Options {
			lower, ok := strings.CutPrefix(o, "lowerdir=")
			if !ok {
				continue
			}
			if strings.Contains(lower, `\`) {
				// Escaped paths: not guessed at.
				return nil, fmt.Errorf("%w: escaped overlay lowerdir %q", errFallback, lower)
			}
			dirs := strings.Split(lower, ":")
			for _, d := range dirs {
				if !filepath.IsAbs(d) {
					// A relative path would be read from the plugin's
					// working directory, not from the snapshot.
					return nil, fmt.Errorf("%w: overlay lowerdir %q is not absolute", errFallback, d)
				}
			}
			slices.Reverse(dirs)
			return dirs, nil
		}
	}
	return nil, fmt.Errorf("%w: a view mounted as %s", errFallback, m.Type)
}

// readLayerDirs reads each layer directory (bottom first) whose diff ID is
// in ids, taking cached layers from cached.
func readLayerDirs(ctx context.Context, dirs, ids []string, lim layerfs.Limits, cached Cached) ([]index.Layer, error) {
	out := make([]index.Layer, len(ids))
	for i, dir := range dirs {
		out[i].DiffID = ids[i]
		if cached != nil {
			if fs := cached(ids[i]); fs != nil {
				out[i].Files = fs
				continue
			}
		}
		fs, err := layerfs.FromDir(ctx, dir, lim)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i+1, ids[i], err)
		}
		out[i].Files = fs
	}
	return out, nil
}

func randomHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ContainerdFromInfo returns the containerd image store a daemon uses, as
// its `docker info` reports it (API 1.46 on), or nil when it keeps images
// in a graph driver (the classic store) or does not say.
func ContainerdFromInfo(info system.Info) *ContainerdStore {
	snapshotter := false
	for _, kv := range info.DriverStatus {
		if kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1" {
			snapshotter = true
		}
	}
	if !snapshotter || info.Containerd == nil || info.Containerd.Address == "" {
		return nil
	}
	ns := info.Containerd.Namespaces.Containers
	if ns == "" {
		ns = "moby"
	}
	return &ContainerdStore{Address: info.Containerd.Address, Namespace: ns, Snapshotter: info.Driver}
}

// StoreFinder asks a daemon, once it answers, which image store it uses.
// A daemon restarted into the other store is seen at the plugin's next
// start (the store is a daemon setting, changed with a restart of both).
type StoreFinder struct {
	mu    sync.Mutex
	known bool
	store *ContainerdStore
}

// Find returns the daemon's containerd store, or nil for the classic
// store or a daemon that cannot say (yet).
func (f *StoreFinder) Find(ctx context.Context, c *client.Client) *ContainerdStore {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.known {
		return f.store
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return nil
	}
	f.known, f.store = true, ContainerdFromInfo(res.Info)
	return f.store
}

// Close closes the connection to containerd, if one was made.
func (f *StoreFinder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.store == nil {
		return nil
	}
	return f.store.Close()
}

// maxMetaBlob bounds an index, manifest or config read from containerd's
// content store.
const maxMetaBlob = 4 << 20

// imageConfig reads, from containerd's content store, the config of the
// image whose target digest is id, for platform (empty: the host's): the
// index's manifest for that platform, then its config. These are local
// reads of small blobs; the daemon's inspect and history cost tens of
// milliseconds each on this store.
func (s *ContainerdStore) imageConfig(ctx context.Context, id, platform string) (*ocispec.Image, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	ctx = namespaces.WithNamespace(ctx, s.Namespace)
	match := platforms.Default()
	if platform != "" {
		p, err := platforms.Parse(platform)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", platform, err)
		}
		match = platforms.Only(p)
	}
	cs := c.ContentStore()
	// read reads a blob of the given size (-1: ask the store), bounded
	// and checked against its digest.
	read := func(d digest.Digest, size int64, what string) ([]byte, error) {
		if size < 0 {
			info, err := cs.Info(ctx, d)
			if err != nil {
				return nil, fmt.Errorf("%w: %s %s: %v", errFallback, what, d, err)
			}
			size = info.Size
		}
		if size > maxMetaBlob {
			return nil, fmt.Errorf("%s %s is %d bytes, over the %d-byte bound", what, d, size, maxMetaBlob)
		}
		b, err := content.ReadBlob(ctx, cs, ocispec.Descriptor{Digest: d, Size: size})
		if err != nil {
			return nil, fmt.Errorf("%w: %s %s: %v", errFallback, what, d, err)
		}
		if digest.FromBytes(b) != d {
			return nil, fmt.Errorf("%s %s does not match its digest", what, d)
		}
		return b, nil
	}
	target, err := digest.Parse(id)
	if err != nil {
		return nil, fmt.Errorf("%w: image ID %q: %v", errFallback, id, err)
	}
	raw, err := read(target, -1, "image")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Manifests []ocispec.Descriptor `json:"manifests"`
		Config    *ocispec.Descriptor  `json:"config"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("image %s: %w", id, err)
	}
	if doc.Config == nil {
		// An index: the manifest of the platform, the best match first.
		var best *ocispec.Descriptor
		for i, m := range doc.Manifests {
			if m.Platform == nil || !match.Match(*m.Platform) {
				continue
			}
			if best == nil || match.Less(*m.Platform, *best.Platform) {
				best = &doc.Manifests[i]
			}
		}
		if best == nil {
			return nil, fmt.Errorf("%w: image %s has no manifest for %s", errFallback, id, match)
		}
		if raw, err = read(best.Digest, best.Size, "manifest"); err != nil {
			return nil, err
		}
		doc.Config = nil
		if err := json.Unmarshal(raw, &doc); err != nil || doc.Config == nil {
			// A nested index, or another kind of document: the daemon's
			// own reading is the fallback.
			return nil, fmt.Errorf("%w: manifest %s of image %s: no config (%v)", errFallback, best.Digest, id, err)
		}
	}
	raw, err = read(doc.Config.Digest, doc.Config.Size, "config")
	if err != nil {
		return nil, err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("config %s of image %s: %w", doc.Config.Digest, id, err)
	}
	return &cfg, nil
}

// names lists the names containerd keeps for the image of target id
// (Docker's tags, without its dangling placeholders).
func (s *ContainerdStore) names(ctx context.Context, id string) []string {
	c, err := s.conn()
	if err != nil {
		return nil
	}
	list, err := c.ImageService().List(namespaces.WithNamespace(ctx, s.Namespace), "target.digest=="+id)
	if err != nil {
		return nil
	}
	var out []string
	for _, im := range list {
		if im.Target.Digest.String() == id && !strings.HasPrefix(im.Name, "moby-dangling@") {
			out = append(out, im.Name)
		}
	}
	return out
}
