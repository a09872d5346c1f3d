package source

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/divds/divds/scanner/layerfs"
)

// rawManifest is a manifest pushed as is, so that it can lie about sizes.
type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

type rawDockerManifest []byte

func (m rawDockerManifest) RawManifest() ([]byte, error) { return m, nil }
func (m rawDockerManifest) MediaType() (types.MediaType, error) {
	return types.DockerManifestSchema2, nil
}

// TestRegistry proves that a registry cannot choose how much memory a
// scan takes: a manifest declaring a huge or unknown config size is
// refused before the config is read; and that a managed plugin's layers
// are verified by their blob digests. The end-to-end
// tests prove the source against Debian's docker-registry; this in-memory
// registry only serves manifests that a real one would not keep.
func TestRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()

	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	good := host + "/test/good:1"
	ref, _ := name.ParseReference(good)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	cfgDigest, _ := img.ConfigName()
	const layer = `{"mediaType":"application/vnd.oci.image.layer.v1.tar","size":1,"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"}`
	for _, tc := range []struct {
		name    string
		size    int64
		wantErr string
	}{
		{"huge", 1 << 40, "declares a config of 1099511627776 bytes"},
		{"unknown", -1, "declares a config of -1 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":%d,"digest":"%s"},"layers":[%s]}`, tc.size, cfgDigest, layer)
			tag := host + "/test/" + tc.name + ":1"
			ref, _ := name.ParseReference(tag)
			if err := remote.Put(ref, rawManifest(m)); err != nil {
				t.Fatal(err)
			}
			_, err := Registry{Ref: tag}.Read(ctx, layerfs.Limits{}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	// A managed plugin's config lists the digest of the gzip blob, not of
	// the tar (measured with dockerd 20.10's docker plugin push).
	layer0, err := random.Layer(256, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := name.NewRepository(host + "/test/plugin")
	if err := remote.WriteLayer(repo, layer0); err != nil {
		t.Fatal(err)
	}
	blob, _ := layer0.Digest()
	blobSize, _ := layer0.Size()
	uncompressed, _ := layer0.DiffID()
	for _, tc := range []struct {
		name, diffID, wantErr string
	}{
		{"plugin", blob.String(), ""},
		{"plugin listing the tar digest", uncompressed.String(), "content is " + blob.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := []byte(fmt.Sprintf(`{"Description":"p","Entrypoint":["/x"],"rootfs":{"type":"layers","diff_ids":[%q]}}`, tc.diffID))
			cl := static.NewLayer(cfg, types.DockerPluginConfig)
			if err := remote.WriteLayer(repo, cl); err != nil {
				t.Fatal(err)
			}
			cd, _ := cl.Digest()
			m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.plugin.v1+json","size":%d,"digest":"%s"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":%d,"digest":"%s"}]}`,
				len(cfg), cd, blobSize, blob)
			tag := repo.Tag(strings.ReplaceAll(tc.name, " ", "-"))
			if err := remote.Put(tag, rawDockerManifest(m)); err != nil {
				t.Fatal(err)
			}
			_, err := Registry{Ref: tag.String()}.Read(ctx, layerfs.Limits{}, nil)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		got, err := Registry{Ref: good}.Read(ctx, layerfs.Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Layers) != 1 {
			t.Fatalf("%d layers, want 1", len(got.Layers))
		}
	})
}
