package dockerd

import (
	"slices"
	"testing"

	"github.com/moby/moby/api/types/image"
)

// On the containerd store a docker tag makes a repository digest: only
// the repositories of the image's pull identity vouch for its names.
func TestPulledDigests(t *testing.T) {
	const d = "@sha256:9e8f2b8a8c3f3d3b1f7a4a6e8b3b0f2a4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e3f"
	digests := []string{"reg.example/app" + d, "reg.example/forged" + d, "alpine" + d}
	for _, tc := range []struct {
		name     string
		identity *image.Identity
		want     []string
	}{
		{"no identity (API before 1.53)", nil, nil},
		{"pulled from one repository", &image.Identity{Pull: []image.PullIdentity{{Repository: "reg.example/app"}}}, []string{"reg.example/app" + d}},
		{"Docker Hub names are normalized", &image.Identity{Pull: []image.PullIdentity{{Repository: "docker.io/library/alpine"}}}, []string{"alpine" + d}},
		{"built, never pulled", &image.Identity{Build: []image.BuildIdentity{{Ref: "x"}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pulledDigests(image.InspectResponse{RepoDigests: digests, Identity: tc.identity})
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
