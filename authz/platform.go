package authz

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Platforms are part of an image's identity. On the containerd image
// store (Docker 29's default) one image ID, the digest of a tag's index,
// covers every platform the tag holds: a verdict about linux/amd64 says
// nothing about linux/arm64 under the same ID. A verdict is therefore
// about an image key: the image ID alone for an image of one platform (the
// classic store's), the ID and a platform for an index. The pair is as
// immutable as the ID: an index digest fixes the manifest of each
// platform.

// ImageKey names what a scan and a verdict are about: the image ID, or
// "ID@os/arch[/variant]" for one platform of an index.
func ImageKey(id, platform string) string {
	if platform == "" {
		return id
	}
	return id + "@" + platform
}

// SplitImageKey is the inverse of ImageKey.
func SplitImageKey(key string) (id, platform string) {
	id, platform, _ = strings.Cut(key, "@")
	return id, platform
}

// NormalPlatform gives a platform's canonical os/arch[/variant] form
// (aarch64 and arm64/v8 are linux/arm64), so that verdicts and
// quarantines match however a request or the daemon spells it.
func NormalPlatform(p ocispec.Platform) string {
	return platforms.Format(platforms.Normalize(p))
}

// parsePlatform reads a platform parameter: os[/arch[/variant]] for a
// pull or a container create, the JSON of an OCI platform for a push
// (API 1.46 on). Empty means none given.
func parsePlatform(q url.Values, jsonForm bool) (string, error) {
	if err := single(q, "platform"); err != nil {
		return "", err
	}
	raw := q.Get("platform")
	if raw == "" {
		return "", nil
	}
	if jsonForm {
		var p ocispec.Platform
		if err := json.Unmarshal([]byte(raw), &p); err != nil || p.OS == "" {
			return "", malformed("platform %q: want the JSON of an OCI platform with an os", raw)
		}
		return NormalPlatform(p), nil
	}
	p, err := platforms.Parse(raw)
	if err != nil {
		return "", malformed("platform %q: %v", raw, err)
	}
	return NormalPlatform(p), nil
}

// hostPlatform is the platform the daemon picks when a request names
// none: the host's (the plugin runs on the daemon's host). Computed once:
// every gated decision asks for it.
var hostPlatform = sync.OnceValue(func() string { return NormalPlatform(platforms.DefaultSpec()) })

// scope says what a request brings into play of an image's platforms.
type scope int

const (
	// named: the platform a request names, before the daemon acts (a
	// create, a pull of a local name, a service); when the image lacks
	// it, nothing: the daemon answers "not found", and what it then
	// pulls passes the pull gate.
	named scope = iota
	// every: a push or a pull of the whole tag ships or brings every
	// platform present.
	every
	// acted: the platform the daemon says it acted on (a container's
	// platform, a pull's). It is judged even when the image's inspect
	// does not list it: the daemon did use it.
	acted
)

// platformsToJudge says which platforms of img a request naming requested
// ("" for none) brings into play, in scope sc:
//   - an image of one platform (the classic store): that image, "";
//   - a platform named: that one (see the scopes for one the image lacks);
//   - none named, in scope every: every platform the image has;
//   - none named, otherwise: the host's platform when the image has it,
//     else every platform it has (which one the daemon falls back to is
//     not the gate's guess to make).
func platformsToJudge(img ImageInfo, requested string, sc scope) []string {
	if len(img.Platforms) == 0 {
		return []string{""}
	}
	switch {
	case requested != "":
		if sc == acted || slices.Contains(img.Platforms, requested) {
			return []string{requested}
		}
		return nil
	case sc != every && slices.Contains(img.Platforms, hostPlatform()):
		return []string{hostPlatform()}
	}
	return slices.Clone(img.Platforms)
}

// withPlatform names a reference for one platform in messages: the
// host's platform, which the daemon uses unless told otherwise, goes
// without saying.
func withPlatform(ref, platform string) string {
	if platform == "" || platform == hostPlatform() {
		return ref
	}
	return ref + " (" + platform + ")"
}

// DefaultKey is the image key a request naming no platform is judged by
// first: the image's own ID, or its host platform's on the containerd
// store (what an arrival scan prepares).
func DefaultKey(img ImageInfo) string {
	if plats := platformsToJudge(img, "", named); len(plats) > 0 {
		return ImageKey(img.ID, plats[0])
	}
	return img.ID
}
