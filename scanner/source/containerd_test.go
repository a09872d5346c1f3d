package source

import (
	"errors"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/moby/moby/api/types/system"
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
