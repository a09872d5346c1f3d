package source

import (
	"errors"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/system"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestViewLowerDirs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mounts []mount.Mount
		want   []string
	}{
		{"one layer is a bind mount", []mount.Mount{{Type: "bind", Source: "/s/1/fs", Options: []string{"ro", "rbind"}}}, []string{"/s/1/fs"}},
		{"several are an overlay, topmost first", []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"index=off", "lowerdir=/s/3/fs:/s/2/fs:/s/1/fs"}}}, []string{"/s/1/fs", "/s/2/fs", "/s/3/fs"}},
		{"escaped paths are not guessed", []mount.Mount{{Type: "overlay", Options: []string{`lowerdir=/s/a\:b/fs:/s/1/fs`}}}, nil},
		{"an overlay without lowerdir", []mount.Mount{{Type: "overlay", Options: []string{"upperdir=/u"}}}, nil},
		{"another kind of mount", []mount.Mount{{Type: "erofs", Source: "/x"}}, nil},
		{"two mounts", []mount.Mount{{Type: "bind", Source: "/a"}, {Type: "bind", Source: "/b"}}, nil},
		{"a relative bind source", []mount.Mount{{Type: "bind", Source: "s/1/fs"}}, nil},
		{"a relative lowerdir", []mount.Mount{{Type: "overlay", Options: []string{"lowerdir=/s/2/fs:s/1/fs"}}}, nil},
		{"none", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := viewLowerDirs(tc.mounts)
			if tc.want == nil {
				if !errors.Is(err, errFallback) {
					t.Fatalf("got %v, %v; want a fallback", got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestContainerdFromInfo(t *testing.T) {
	cd := &system.ContainerdInfo{Address: "/run/containerd/containerd.sock"}
	snap := [][2]string{{"driver-type", "io.containerd.snapshotter.v1"}}
	for _, tc := range []struct {
		name string
		info system.Info
		want *ContainerdStore
	}{
		{"the containerd store", system.Info{Driver: "overlayfs", DriverStatus: snap, Containerd: cd},
			&ContainerdStore{Address: cd.Address, Namespace: "moby", Snapshotter: "overlayfs"}},
		{"a namespace of its own", system.Info{Driver: "overlayfs", DriverStatus: snap, Containerd: &system.ContainerdInfo{Address: "/c.sock", Namespaces: system.ContainerdNamespaces{Containers: "divds-e2e"}}},
			&ContainerdStore{Address: "/c.sock", Namespace: "divds-e2e", Snapshotter: "overlayfs"}},
		{"the classic store", system.Info{Driver: "overlay2", DriverStatus: [][2]string{{"Backing Filesystem", "extfs"}}, Containerd: cd}, nil},
		{"an old daemon that does not say", system.Info{Driver: "overlayfs", DriverStatus: snap}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ContainerdFromInfo(tc.info)
			if (got == nil) != (tc.want == nil) || got != nil && (got.Address != tc.want.Address || got.Namespace != tc.want.Namespace || got.Snapshotter != tc.want.Snapshotter) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// On the containerd store a docker tag makes a repository digest: only
// the repositories of the image's pull identity vouch for its names.
func TestPulledDigests(t *testing.T) {
	const d = "@sha256:9e8f2b8a8c3f3d3b1f7a4a6e8b3b0f2a4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e3f"
	digests := []string{"reg.example/app" + d, "reg.example/forged" + d, "alpine" + d, "127.0.0.1:5000/app" + d}
	containerdStore := &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest}
	for _, tc := range []struct {
		name     string
		desc     *ocispec.Descriptor
		identity *image.Identity
		want     []string
	}{
		{"the classic store records pulls itself", nil, nil, digests},
		{"another repository of the portless host", containerdStore, &image.Identity{Pull: []image.PullIdentity{{Repository: "127.0.0.1/other"}}}, nil},
		{"no identity (API before 1.53)", containerdStore, nil, nil},
		{"pulled from one repository", containerdStore, &image.Identity{Pull: []image.PullIdentity{{Repository: "reg.example/app"}}}, []string{"reg.example/app" + d}},
		{"Docker Hub names are normalized", containerdStore, &image.Identity{Pull: []image.PullIdentity{{Repository: "docker.io/library/alpine"}}}, []string{"alpine" + d}},
		{"built, never pulled", containerdStore, &image.Identity{Build: []image.BuildIdentity{{Ref: "x"}}}, nil},
		{"Docker 29 drops the registry's port", containerdStore, &image.Identity{Pull: []image.PullIdentity{{Repository: "127.0.0.1/app"}}}, []string{"127.0.0.1:5000/app" + d}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PulledDigests(image.InspectResponse{RepoDigests: digests, Descriptor: tc.desc, Identity: tc.identity})
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
