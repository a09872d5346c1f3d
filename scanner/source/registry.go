package source

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/docker/cli/cli/config"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/divds/divds/report"
	"github.com/divds/divds/scanner/index"
	"github.com/divds/divds/scanner/layerfs"
)

// Registry reads an image from a registry. Layers are streamed and
// decompressed once; a layer already cached is not downloaded at all.
type Registry struct {
	Ref string
	// Keychain gives credentials; default authn.DefaultKeychain (the
	// docker config.json of $DOCKER_CONFIG or ~/.docker), which answers
	// anonymously for registries it has no entry for.
	Keychain authn.Keychain
	// Platform resolves a manifest list; default linux and this host's
	// architecture.
	Platform *v1.Platform
	// Insecure allows plain HTTP for a registry that is not on loopback
	// (loopback registries always may use it).
	Insecure bool
}

// Describe implements Source.
func (r Registry) Describe() string { return "registry image " + r.Ref }

// Read implements Source.
func (r Registry) Read(ctx context.Context, lim layerfs.Limits, cached Cached) (*Image, error) {
	var nopts []name.Option
	if r.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(r.Ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", r.Ref, err)
	}
	kc := r.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	plat := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if r.Platform != nil {
		plat = *r.Platform
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithPlatform(plat)}
	img, err := remote.Image(ref, ropts...)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", r.Ref, err)
	}
	// go-containerregistry reads the config up to the size the manifest
	// declares, and without any bound when that size is negative: the
	// registry, not the plugin, would choose how much memory a scan takes.
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("fetch %s manifest: %w", r.Ref, err)
	}
	if m.Config.Size < 0 || m.Config.Size > maxJSON {
		return nil, fmt.Errorf("%s: the manifest declares a config of %d bytes; the limit is %d", r.Ref, m.Config.Size, maxJSON)
	}
	// A managed plugin's config lists the digests of its compressed
	// layer blobs where an image's lists those of the uncompressed tars.
	plugin := m.Config.MediaType == types.DockerPluginConfig
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("fetch %s config: %w", r.Ref, err)
	}
	id, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	dig, err := img.Digest()
	if err != nil {
		return nil, err
	}
	out := &Image{Meta: report.Image{
		ID: id.String(), Names: []string{ref.Name()}, Digests: []string{ref.Context().Name() + "@" + dig.String()},
		OS: cfg.OS, Architecture: cfg.Architecture,
	}}
	if !cfg.Created.IsZero() {
		t := cfg.Created.Time
		out.Meta.Created = &t
	}
	var cmds []string
	for _, h := range cfg.History {
		if !h.EmptyLayer {
			cmds = append(cmds, h.CreatedBy)
		}
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("fetch %s layers: %w", r.Ref, err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("%s: %d layers, config lists %d", r.Ref, len(layers), len(cfg.RootFS.DiffIDs))
	}
	for i, l := range layers {
		diffID := cfg.RootFS.DiffIDs[i].String()
		digest, _ := l.Digest()
		ml := report.Layer{Digest: digest.String(), DiffID: diffID}
		if len(cmds) == len(layers) {
			ml.CreatedBy = cmds[i]
		}
		out.Meta.Layers = append(out.Meta.Layers, ml)
		if cached != nil {
			if fs := cached(diffID); fs != nil {
				out.Layers = append(out.Layers, index.Layer{DiffID: diffID, Files: fs})
				continue
			}
		}
		fs, err := readRemoteLayer(ctx, l, diffID, plugin, lim)
		if err != nil {
			return nil, fmt.Errorf("%s layer %d (%s): %w", r.Ref, i+1, diffID, err)
		}
		out.Layers = append(out.Layers, index.Layer{DiffID: diffID, Files: fs})
	}
	return out, nil
}

// readRemoteLayer reads a layer's wanted files, streaming it once, and
// checks the content against want: the digest of the uncompressed tar
// (an image's diff ID) or, with blobDigest, of the gzip blob itself (what
// a managed plugin's config lists).
func readRemoteLayer(ctx context.Context, l v1.Layer, want string, blobDigest bool, lim layerfs.Limits) (*layerfs.FileSet, error) {
	var (
		raw io.ReadCloser
		err error
	)
	// The blob is decompressed here, not by go-containerregistry, so that
	// the bounds against compression bombs apply (decompress).
	raw, err = l.Compressed()
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	h := sha256.New()
	var stream, hashed io.Reader
	if blobDigest {
		// A managed plugin's config lists the digest of the gzip blob.
		hashed = io.TeeReader(&capped{r: raw, n: maxStream}, h)
		zr, err := decompress(bufio.NewReaderSize(hashed, 64<<10))
		if err != nil {
			return nil, fmt.Errorf("decompress the plugin layer: %w", err)
		}
		defer zr.Close()
		stream = &capped{r: zr, n: maxStream}
	} else {
		zr, err := decompress(bufio.NewReaderSize(raw, 64<<10))
		if err != nil {
			return nil, fmt.Errorf("decompress the layer: %w", err)
		}
		defer zr.Close()
		hashed = io.TeeReader(&capped{r: zr, n: maxStream}, h)
		stream = hashed
	}
	fs, err := layerfs.FromTar(ctx, stream, lim)
	if err != nil {
		return nil, err
	}
	// The whole content is hashed, past the end of the tar.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, hashed); err != nil {
		return nil, err
	}
	if got := digestOf(h); got != want {
		return nil, fmt.Errorf("content is %s, the config says %s", got, want)
	}
	return fs, nil
}

// ConfigKeychain gives the credentials of one docker config.json file,
// such as the ones an admin provides the plugin (the users' own are not
// passed to authorization plugins). Registries it has no entry for are
// accessed anonymously.
type ConfigKeychain struct {
	Path string
}

// Resolve implements authn.Keychain.
func (k ConfigKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	f, err := os.Open(k.Path)
	if err != nil {
		return nil, fmt.Errorf("registry credentials: %w", err)
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("registry credentials %s: %w", k.Path, err)
	}
	key := r.RegistryStr()
	if key == name.DefaultRegistry {
		key = authn.DefaultAuthKey
	}
	ac, err := cf.GetAuthConfig(key)
	if err != nil {
		return nil, fmt.Errorf("registry credentials for %s: %w", key, err)
	}
	if ac.Username == "" && ac.Password == "" && ac.Auth == "" && ac.IdentityToken == "" && ac.RegistryToken == "" {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{
		Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
	}), nil
}
